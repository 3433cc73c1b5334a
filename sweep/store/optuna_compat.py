"""Every use of Optuna's internals, in one place.

Checked against Optuna 5.0 and 5.1 (pyproject allows >=5.0,<6).
tests/sweep/store/test_optuna_compat.py fails loudly on an Optuna that changed
any of them; fix them here, and the rest of sweep follows. The SQL over
Optuna's tables (``sweep.store.queries``) is the other coupling, covered by the
tests of what it reads.
"""

from __future__ import annotations

import optuna

CHECKED_VERSIONS = ("5.0", "5.1")


def trial_id(trial: optuna.Trial) -> int:
    """The storage id of a live trial (Optuna keeps it private)."""
    return int(trial._trial_id)


def is_tell_on_finished_trial(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna refusing to tell a trial that is already finished.

    Optuna raises a bare ValueError for it, told apart from others only by its text.
    """
    return isinstance(exc, ValueError) and "Cannot tell a" in str(exc)
