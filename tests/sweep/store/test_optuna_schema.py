"""Optuna's schema version: sweep's SQL over Optuna's tables runs only on a tested revision.

`sweep db upgrade`, workers and the API refuse a database whose Optuna tables are
at a revision sweep was not tested with, with a message that says what to do.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from api.app import create_app
from sweep.cli.app import app as cli
from sweep.errors import SchemaNotReady, UnsupportedOptunaSchema
from sweep.store import optuna_compat
from sweep.store.engine import make_engine
from sweep.store.migrations import check_ready, optuna_head_revision, upgrade
from sweep.worker.loop import Worker
from tests.conftest import fast_settings

NEWER = "v9.0.0.a"  # a revision the installed Optuna does not know


def _set_optuna_revision(url: str, revision: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()


def test_the_installed_optuna_schema_is_a_tested_one() -> None:
    assert optuna_head_revision() in optuna_compat.CHECKED_SCHEMAS


def test_a_database_of_a_newer_optuna_stops_db_upgrade_workers_and_the_api(db_url: str) -> None:
    _set_optuna_revision(db_url, NEWER)
    env = {"SWEEP_DATABASE_URL": db_url}

    upgraded = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 1
    assert NEWER in upgraded.output and "not tested" in upgraded.output
    assert "Traceback" not in upgraded.output

    worker = CliRunner().invoke(cli, ["worker", "--device", "cpu", "--exit-when-idle"], env=env)
    assert worker.exit_code == 1
    assert NEWER in worker.output and "not tested" in worker.output
    assert "Traceback" not in worker.output
    with pytest.raises(UnsupportedOptunaSchema):  # it does not wait for someone to upgrade
        Worker(fast_settings(db_url), device="cpu", exit_when_idle=True).run()

    api = create_app(fast_settings(db_url))
    ready = TestClient(api).get("/readyz")
    assert ready.status_code == 503 and NEWER in ready.json()["detail"]
    with pytest.raises(UnsupportedOptunaSchema, match=NEWER), TestClient(api):
        pass  # start-up itself fails


def test_an_older_optuna_schema_waits_for_db_upgrade(db_url: str) -> None:
    _set_optuna_revision(db_url, "v3.0.0.d")
    with pytest.raises(SchemaNotReady, match="sweep db upgrade"):
        check_ready(make_engine(db_url))


def test_an_installed_optuna_of_an_untested_schema_creates_nothing(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optuna_compat, "CHECKED_SCHEMAS", ("v0.0.0.a",))
    engine = make_engine(empty_url)
    with pytest.raises(UnsupportedOptunaSchema, match="pip install"):
        upgrade(engine)
    assert "trials" not in inspect(engine).get_table_names()
    engine.dispose()
