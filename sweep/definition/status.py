"""A sweep's status and the changes a user may ask for.

queued → running ⇄ paused → completed | cancelled | failed. Every change is a
compare-and-set in the store (``sweep.store.sweep_rows.set_status``), so a pause or a cancel
is never overwritten by a worker that read the old status a moment earlier.
"""

from __future__ import annotations

from enum import StrEnum


class SweepStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


SWEEP_STATUSES = tuple(SweepStatus)
ACTIVE_STATUSES = (SweepStatus.QUEUED, SweepStatus.RUNNING)  # workers take trials from these
UNFINISHED_STATUSES = (SweepStatus.QUEUED, SweepStatus.RUNNING, SweepStatus.PAUSED)

# What a user may ask: action -> (statuses it applies to, status it sets).
TRANSITIONS: dict[str, tuple[tuple[SweepStatus, ...], SweepStatus]] = {
    "pause": ((SweepStatus.QUEUED, SweepStatus.RUNNING), SweepStatus.PAUSED),
    "resume": ((SweepStatus.PAUSED,), SweepStatus.RUNNING),
    "cancel": (UNFINISHED_STATUSES, SweepStatus.CANCELLED),
}
