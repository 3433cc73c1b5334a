"""The trial lifecycle: claims, the lease on a running trial, duplicates, evaluation runs,
reaping stale trials and settling a sweep that is done.

May import: sweep.store, sweep.definition, sweep.training (the task contract only).
Never: sweep.worker, sweep.service, sweep.cli, api.
"""
