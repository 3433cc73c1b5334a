"""Every use of Optuna's internals, in one place, and the check of Optuna's schema version.

Checked against Optuna 5.0 and 5.1 (pyproject allows >=5.0,<6).
tests/sweep/store/test_optuna_compat.py fails loudly on an Optuna that changed
any of them; fix them here, and the rest of sweep follows. The SQL over
Optuna's tables (``sweep.store.queries``, ``work``, ``trial_writes``) is the
other coupling: it was tested on the schema revisions in ``CHECKED_SCHEMAS``,
and ``check_schema`` refuses any other before a process starts work.
"""

from __future__ import annotations

import functools
from collections.abc import Collection

import optuna
from optuna.storages import BaseStorage, RDBStorage

from sweep.errors import UnsupportedOptunaSchema

CHECKED_VERSIONS = ("5.0", "5.1")
# Optuna's own schema revisions (its ``alembic_version`` table) that sweep's SQL over
# Optuna's tables was tested on: Optuna 5.0 and 5.1 both keep their tables at v3.2.0.a.
CHECKED_SCHEMAS = ("v3.2.0.a",)


def check_schema(in_database: str | None, installed: str | None, known: Collection[str]) -> None:
    """Raise UnsupportedOptunaSchema unless Optuna's schema is one sweep was tested with.

    ``in_database``: the revision of Optuna's tables in the database (None: none yet);
    ``installed``: the newest revision the installed Optuna creates or upgrades to;
    ``known``: every revision the installed Optuna knows. A database behind a tested
    ``installed`` revision is fine here: ``sweep db upgrade`` brings it up.
    """
    tested = ", ".join(CHECKED_SCHEMAS)
    if installed not in CHECKED_SCHEMAS:
        raise UnsupportedOptunaSchema(
            f"the installed Optuna {optuna.__version__} keeps its tables at schema revision "
            f"{installed}, which sweep was not tested with (tested: {tested}, Optuna "
            f"{' and '.join(CHECKED_VERSIONS)}); install one of those: "
            f"pip install 'optuna>={CHECKED_VERSIONS[0]},<{_next_minor(CHECKED_VERSIONS[-1])}'"
        )
    if in_database is not None and in_database not in known:
        raise UnsupportedOptunaSchema(
            f"the database's Optuna tables are at schema revision {in_database}, which the "
            f"installed Optuna {optuna.__version__} does not know (a newer Optuna upgraded "
            f"them) and sweep was not tested with (tested: {tested}); use a database at a "
            "tested revision, or a sweep release tested with that Optuna"
        )


def _next_minor(version: str) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) + 1}"


@functools.cache
def _shared_view(storage: RDBStorage) -> BaseStorage:
    return optuna.storages.get_storage(storage)


def study_view(storage: RDBStorage, *, fresh: bool = False) -> BaseStorage:
    """A cached view of ``storage``'s studies (Optuna's own ``_CachedStorage``), for
    ``optuna.Study(..., storage=view)``.

    The view is one per process: a study opened on it reads only its new and unfinished
    trials, not all of them again (finished trials never change, and Optuna keeps them
    once read). ``fresh``: a new view that reads every trial once, for when a trial may
    have been added out of order (a retry or a queued configuration with an older id
    than trials this process saw finish, which the shared view would never read).
    """
    return optuna.storages.get_storage(storage) if fresh else _shared_view(storage)


def trial_id(trial: optuna.Trial) -> int:
    """The storage id of a live trial (Optuna keeps it private)."""
    return int(trial._trial_id)


def is_tell_on_finished_trial(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna refusing to tell a trial that is already finished.

    Optuna raises a bare ValueError for it, told apart from others only by its text.
    """
    return isinstance(exc, ValueError) and "Cannot tell a" in str(exc)
