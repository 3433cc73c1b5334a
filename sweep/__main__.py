"""`python -m sweep` runs the CLI."""

from sweep.cli import app

app()
