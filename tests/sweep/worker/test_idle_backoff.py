"""An idle worker asks for work less and less often, with jitter; soon again after a claim."""

from __future__ import annotations

import random
import threading
from typing import Any

from sqlalchemy import event

from sweep.config import Settings
from sweep.worker.loop import IdleBackoff, Worker


def test_the_wait_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    backoff = IdleBackoff(1.0, 8.0, random.Random(7))
    waits = [backoff.next_wait() for _ in range(6)]
    for wait, ceiling in zip(waits, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert len(set(waits)) == len(waits)  # jittered, not in step with other workers
    backoff.reset()
    assert backoff.next_wait() <= 1.0


def test_an_idle_worker_polls_a_few_times_not_every_interval(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, poll_interval=0.05, max_poll_interval=0.8)
    worker = Worker(settings, device="cpu")
    polls: list[str] = []

    @event.listens_for(worker.engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM sweeps" in statement:
            polls.append(statement)

    stop = threading.Timer(3.0, worker.stopping.set)
    stop.start()
    assert worker.run() == 0
    # a fixed 0.05 s interval polls 60 times in 3 s; waits of 0.05 … 0.8 s (jittered), ~8
    assert 3 <= len(polls) <= 14, len(polls)
