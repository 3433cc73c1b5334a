"""One writer per worker: the epochs of all its running trials, written in one transaction.

Training never waits for the store. A reported epoch is kept in memory and a
background thread writes every pending epoch of every trial the worker runs in
one transaction (a multi-row insert into Optuna's intermediate values, the
trials' user attributes, their heartbeats, one lease check) at most every
``flush_interval`` seconds, or every ``heartbeat_interval`` when nothing is
pending. A trial that ends flushes first (``flush``). A flush to a trial that is
no longer RUNNING (a reaper failed it: its worker was stopped past the grace
period) writes nothing to it and raises LeaseLost to its run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, DateTime, Enum, column, func, insert, select, table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import TableClause

from sweep import metrics
from sweep.definition.status import SweepStatus
from sweep.store.engine import is_outage, is_sqlite, transaction
from sweep.store.queries import TRIAL_STATES
from sweep.store.tables import Sweep

log = logging.getLogger("sweep.trials")

_trials = table(
    "trials", column("trial_id"), column("state", Enum(*TRIAL_STATES, name="trialstate"))
)
_values = table(
    "trial_intermediate_values",
    column("trial_id"),
    column("step"),
    column("intermediate_value"),
    # Optuna's enum (a PostgreSQL type of this name); only finite values are reported
    column(
        "intermediate_value_type",
        Enum("FINITE", "INF_POS", "INF_NEG", "NAN", name="trialintermediatevaluetype"),
    ),
)
FINITE = "FINITE"  # only finite losses are reported: a NaN or infinite one ends the trial
_user_attrs = table(
    "trial_user_attributes", column("trial_id"), column("key"), column("value_json")
)
_system_attrs = table(
    "trial_system_attributes", column("trial_id"), column("key"), column("value_json")
)
_heartbeats = table("trial_heartbeats", column("trial_id"), column("heartbeat", DateTime))


Pending = tuple[dict[int, float], dict[str, Any], dict[str, Any]]  # values, user, system attrs


class LeaseLost(Exception):
    """The trial was failed by a reaper while this worker still held it."""


@dataclass
class Lease:
    """What the writer holds for one running trial: pending writes, and how its lease stands."""

    trial_id: int
    sweep_id: int
    values: dict[int, float] = field(default_factory=dict)  # step -> validation loss
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    lost: str | None = None

    def take(self) -> Pending:
        taken = (self.values, self.user_attrs, self.system_attrs)
        self.values, self.user_attrs, self.system_attrs = {}, {}, {}
        return taken

    def put_back(self, taken: Pending) -> None:
        """Pending writes of a flush that failed, under any written since (which are newer)."""
        self.values = {**taken[0], **self.values}
        self.user_attrs = {**taken[1], **self.user_attrs}
        self.system_attrs = {**taken[2], **self.system_attrs}


class EpochWriter:
    """Buffers the reports of a worker's running trials and writes them together.

    Thread-safe: trials are added and reported from the training thread, flushed
    from the writer's own thread and, before a trial ends, from the training thread.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        flush_interval: float,
        heartbeat_interval: float,
    ) -> None:
        self._factory = factory
        self._flush_interval = flush_interval
        self._heartbeat_interval = heartbeat_interval
        self._leases: dict[int, Lease] = {}
        self._state = threading.Lock()  # guards _leases and their pending writes
        self._flushing = threading.Lock()  # one flush at a time, in order
        self._last_flush = time.monotonic()
        self._last_status = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new trial: write who runs it now, not at the next tick
        self._thread: threading.Thread | None = None

    # ---- what a trial's run calls ---------------------------------------------------------

    def hold(self, trial_id: int, sweep_id: int, user_attrs: dict[str, Any]) -> Lease:
        """Start writing for ``trial_id`` (its heartbeat too); ``user_attrs`` go in the first
        flush."""
        lease = Lease(trial_id, sweep_id, user_attrs=dict(user_attrs))
        with self._state:
            self._leases[trial_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
                self._thread.start()
        self._wake.set()
        return lease

    def report(
        self, lease: Lease, step: int, value: float, user_attrs: dict[str, Any] | None = None
    ) -> None:
        """Queue one epoch's value (and attributes such as the curves so far)."""
        with self._state:
            if lease.lost is not None:
                raise LeaseLost(lease.lost)
            lease.values.setdefault(step, value)  # as Optuna does, a step's first value stands
            lease.user_attrs.update(user_attrs or {})

    def set_attrs(
        self,
        lease: Lease,
        user_attrs: dict[str, Any] | None = None,
        system_attrs: dict[str, Any] | None = None,
    ) -> None:
        """Queue attributes of the trial for the next flush."""
        with self._state:
            lease.user_attrs.update(user_attrs or {})
            lease.system_attrs.update(system_attrs or {})

    def held(self) -> list[int]:
        """The trials the writer holds a lease on (writes and heartbeats), by id."""
        with self._state:
            return sorted(self._leases)

    def pending(self, lease: Lease) -> bool:
        """Whether the trial has writes waiting for the next flush."""
        with self._state:
            return self._has_writes(lease)

    @staticmethod
    def _has_writes(lease: Lease) -> bool:
        return bool(lease.values or lease.user_attrs or lease.system_attrs)

    def release(self, lease: Lease) -> None:
        """Stop writing for the trial (its pending writes are dropped: flush first)."""
        with self._state:
            self._leases.pop(lease.trial_id, None)

    def flush(self, lease: Lease | None = None) -> None:
        """Write everything pending now, ``lease``'s too if it was released; LeaseLost if
        ``lease``'s trial is no longer RUNNING."""
        with self._flushing:
            self._flush_all(lease)
        if lease is not None and lease.lost is not None:
            raise LeaseLost(lease.lost)

    def close(self) -> None:
        """Stop the writer's thread (pending writes are the runs' to flush before this)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    # ---- the flush ------------------------------------------------------------------------

    def _run(self) -> None:
        tick = min(self._flush_interval, self._heartbeat_interval)
        while not self._stop.is_set():
            woken = self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._state:
                pending = any(self._has_writes(lease) for lease in self._leases.values())
                idle_for = time.monotonic() - self._last_flush
            if not (woken or pending or idle_for >= self._heartbeat_interval):
                continue
            try:
                with self._flushing:
                    self._flush_all()
            except Exception as exc:  # a blip must not stop the writer; the next tick retries
                metrics.background_error(log, "writer", "writing epochs", outage=is_outage(exc))

    def _flush_all(self, also: Lease | None = None) -> None:
        with self._state:
            held = {**self._leases, **({also.trial_id: also} if also is not None else {})}
            leases = [lease for lease in held.values() if lease.lost is None]
            taken = {lease.trial_id: lease.take() for lease in leases}
        if not leases:
            return
        check_status = time.monotonic() - self._last_status >= self._heartbeat_interval
        try:
            with transaction(self._factory) as session:
                conn = session.connection()
                running = _lock_running(conn, list(taken))
                _write(conn, {tid: taken[tid] for tid in running})
                if check_status:
                    cancelled = _cancelled_sweeps(conn, {lease.sweep_id for lease in leases})
        except BaseException:
            with self._state:
                for lease in leases:
                    lease.put_back(taken[lease.trial_id])
            raise
        self._last_flush = time.monotonic()
        with self._state:
            for lease in leases:
                if lease.trial_id not in running:
                    lease.lost = f"trial {lease.trial_id} is no longer running (it was reaped)"
                if check_status and lease.sweep_id in cancelled:
                    lease.cancelled.set()
        if check_status:
            self._last_status = self._last_flush


def _lock_running(conn: Connection, trial_ids: list[int]) -> set[int]:
    """Renew the heartbeats of ``trial_ids`` and return those still RUNNING, locked until commit.

    The heartbeat update comes first: on SQLite it takes the database's write lock, on
    PostgreSQL the state rows are locked, so no reaper fails a trial between check and write.
    """
    beats = conn.execute(
        update(_heartbeats)
        .where(_heartbeats.c.trial_id.in_(trial_ids))
        .values(heartbeat=func.now())
    )
    query = select(_trials.c.trial_id).where(
        _trials.c.trial_id.in_(trial_ids), _trials.c.state == "RUNNING"
    )
    if not is_sqlite(str(conn.engine.url)):
        query = query.with_for_update()
    running = {int(tid) for tid in conn.execute(query).scalars()}
    if beats.rowcount < len(trial_ids):  # a claim records the first beat; this is a fallback
        beating = select(_heartbeats.c.trial_id).where(_heartbeats.c.trial_id.in_(running))
        missing = running - {int(tid) for tid in conn.execute(beating).scalars()}
        if missing:
            rows = [{"trial_id": tid, "heartbeat": func.now()} for tid in sorted(missing)]
            conn.execute(insert(_heartbeats).values(rows))
    return running


def _write(conn: Connection, taken: dict[int, Pending]) -> None:
    """The pending writes of the trials in ``taken``: one multi-row statement per table."""
    values = [
        {
            "trial_id": tid,
            "step": step,
            "intermediate_value": value,
            "intermediate_value_type": FINITE,
        }
        for tid, (steps, _, _) in taken.items()
        for step, value in sorted(steps.items())
    ]
    if values:  # a step already stored keeps its value, as Optuna's report does
        conn.execute(_dialect(conn).insert(_values).values(values).on_conflict_do_nothing())
    user = [
        (tid, key, value) for tid, (_, attrs, _) in taken.items() for key, value in attrs.items()
    ]
    system = [(tid, key, val) for tid, (_, _, attrs) in taken.items() for key, val in attrs.items()]
    for attrs_table, rows in ((_user_attrs, user), (_system_attrs, system)):
        if rows:
            _upsert(conn, attrs_table, rows)


def _upsert(conn: Connection, attrs: TableClause, rows: list[tuple[int, str, Any]]) -> None:
    """Set attributes (trial id, key, value) in an attribute table, replacing existing keys."""
    statement = (
        _dialect(conn)
        .insert(attrs)
        .values(
            [
                {"trial_id": tid, "key": key, "value_json": json.dumps(value)}
                for tid, key, value in rows
            ]
        )
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["trial_id", "key"],
            set_={"value_json": statement.excluded.value_json},
        )
    )


def _dialect(conn: Connection) -> Any:
    """The dialect module whose ``insert`` has ON CONFLICT (both have it, spelled alike)."""
    return sqlite if is_sqlite(str(conn.engine.url)) else postgresql


def _cancelled_sweeps(conn: Connection, sweep_ids: set[int]) -> set[int]:
    """Which of the sweeps were cancelled (or deleted): their trials stop at the next epoch."""
    query = select(Sweep.id, Sweep.status).where(Sweep.id.in_(sweep_ids))
    live = {int(sid) for sid, status in conn.execute(query) if status != SweepStatus.CANCELLED}
    return sweep_ids - live
