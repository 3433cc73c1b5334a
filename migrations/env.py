"""Alembic environment: run by sweep.schema with a connection already open."""

from __future__ import annotations

from alembic import context

from sweep.store.tables import Base

# Optuna keeps its own `alembic_version` table in the same database.
VERSION_TABLE = "sweep_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
