"""What the API and the CLI call: create and control sweeps, results, importance, charts,
tokens, the database's Prometheus gauges. Functions take a session and flush; the caller commits.

May import: sweep.scheduler, sweep.store, sweep.definition. Never: sweep.worker, sweep.cli, api.
"""
