"""What a sweep is, with no database: its space, search choices, spec, status and evaluation words.

May import: sweep.training (task names and options), sweep.errors, optuna and pydantic.
Never: sweep.store, sweep.scheduler, sweep.worker, sweep.service, sweep.cli, api.
"""
