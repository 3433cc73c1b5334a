"""Schema versions: the service's Alembic migrations and Optuna's own tables."""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from sweep.errors import SchemaNotReady
from sweep.store.engine import Pooling, behind_transaction_pooler, engine_options
from sweep.store.optuna_compat import check_schema

VERSION_TABLE = "sweep_alembic_version"


def _alembic_config() -> Config:
    # Located through the installed package, so it works from a wheel, not only a checkout.
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade Optuna's schema, then migrate the service's tables to ``revision``.

    Optuna's tables come first: the service's migrations index one of them. Refuses
    (UnsupportedOptunaSchema) a schema revision of Optuna's that sweep was not tested with.
    """
    check_optuna_schema(engine)
    # Creating Optuna's schema here, once, keeps workers starting together from racing to.
    storage = optuna.storages.RDBStorage(
        str(engine.url.render_as_string(hide_password=False)),
        engine_kwargs=engine_options(
            str(engine.url), Pooling(transaction_pooler=behind_transaction_pooler(engine))
        ),
        skip_compatibility_check=True,
    )
    if storage.get_current_version() != storage.get_head_version():
        storage.upgrade()
    storage.remove_session()
    storage.engine.dispose()
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Migrate the service's tables down to ``revision`` (Optuna's tables are left alone)."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The service schema's revision in the database, or None if never migrated."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    """The newest revision this version of sweep ships."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def optuna_revision(engine: Engine) -> str | None:
    """The revision of Optuna's schema in the database (its own ``alembic_version`` table)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _optuna_scripts() -> ScriptDirectory:
    return ScriptDirectory(str(Path(optuna.storages.__file__).parent / "_rdb" / "alembic"))


@functools.cache
def optuna_head_revision() -> str | None:
    """The newest revision of Optuna's schema that the installed Optuna knows."""
    return _optuna_scripts().get_current_head()


@functools.cache
def optuna_revisions() -> frozenset[str]:
    """Every revision of Optuna's schema that the installed Optuna knows."""
    return frozenset(script.revision for script in _optuna_scripts().walk_revisions())


def check_optuna_schema(engine: Engine) -> None:
    """Raise UnsupportedOptunaSchema if the installed Optuna's schema, or the one in the
    database, is not a revision sweep's SQL over Optuna's tables was tested with."""
    check_schema(optuna_revision(engine), optuna_head_revision(), optuna_revisions())


def check_ready(engine: Engine) -> None:
    """Raise SchemaNotReady unless the service's and Optuna's schemas are both current, and
    UnsupportedOptunaSchema if Optuna's is one sweep was not tested with (waiting won't help)."""
    optuna_in_database = optuna_revision(engine)
    check_schema(optuna_in_database, optuna_head_revision(), optuna_revisions())
    if current_revision(engine) != head_revision():
        raise SchemaNotReady("the service's tables are missing or behind; run `sweep db upgrade`")
    if optuna_in_database != optuna_head_revision():
        raise SchemaNotReady("Optuna's tables are missing or behind; run `sweep db upgrade`")
