"""Worker processes: the loop that claims and trains, batched runs, one outcome path for both,
and the supervisor that starts one worker per GPU.

May import: sweep.scheduler, sweep.store, sweep.definition, sweep.training.
Never: sweep.service, sweep.cli, api.
"""
