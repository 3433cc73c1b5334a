"""The ``sweep`` command, one module per family: serving (processes), admin (the database
directly) and client (the API over HTTP). Only the commands call into the rest of sweep."""

from sweep.cli import admin, client, serving
from sweep.cli.app import app

__all__ = ["admin", "app", "client", "serving"]
