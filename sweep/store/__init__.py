"""The only code that speaks SQL: engines and sessions, the service's tables, the claim lock,
migrations, queries over Optuna's tables, Optuna's storage and its callbacks.

May import: sweep.definition, sweep.config, sweep.errors. Never: sweep.scheduler,
sweep.worker, sweep.service, sweep.cli, api.
"""
