"""The REST API of sweep (FastAPI)."""
