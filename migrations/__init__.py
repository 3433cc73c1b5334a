"""Alembic migrations for the service's own tables (version table: sweep_alembic_version)."""
