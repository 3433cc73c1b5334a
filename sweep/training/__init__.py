"""Training tasks: data, model and loop, on torch alone (no database, no web)."""
