"""Migrations: the service's schema goes up and down without touching Optuna's."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from sweep.errors import SchemaNotReady
from sweep.store.engine import make_engine
from sweep.store.migrations import check_ready, current_revision, downgrade, head_revision, upgrade


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_url: str) -> None:
    engine = make_engine(empty_url)
    with pytest.raises(SchemaNotReady):
        check_ready(engine)

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    check_ready(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"sweeps", "sweep_alembic_version", "studies", "trials", "alembic_version"} <= tables
    with engine.connect() as conn:
        optuna_version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    downgrade(engine, "base")
    assert "sweeps" not in inspect(engine).get_table_names()
    with pytest.raises(SchemaNotReady, match="sweep db upgrade"):
        check_ready(engine)
    with engine.connect() as conn:  # Optuna's own version table is untouched
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            optuna_version
        )

    upgrade(engine)
    check_ready(engine)
    engine.dispose()


def test_upgrade_is_idempotent(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    upgrade(engine)
    check_ready(engine)
