"""Several workers on one node: one child process per GPU (or N CPU workers), kept alive.

Each child is a plain `sweep worker` with its own CUDA_VISIBLE_DEVICES (GPU) or
its share of the CPU cores as torch threads (CPU), so one slow or crashed child
never stalls the others.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("sweep.supervisor")

RESTART_BACKOFF_S = (1.0, 30.0)


class NoGpuError(RuntimeError):
    """--gpus was given but no GPU is visible."""


@dataclass
class Child:
    """One worker process the supervisor keeps running."""

    label: str
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    done: bool = False
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, env=self.env)
        self.started_at = time.monotonic()
        log.info("started worker %s (pid %s)", self.label, self.proc.pid)


def visible_gpu_ids(spec: str) -> list[str]:
    """GPU indices for ``--gpus``: "all" (every visible GPU) or a list like "0,1"."""
    if spec != "all":
        ids = [part.strip() for part in spec.split(",") if part.strip()]
        if not ids or not all(i.isdigit() for i in ids):
            raise ValueError(f"--gpus takes 'all' or indices like 0,1; got {spec!r}")
        return ids
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise NoGpuError(
            "--gpus all: no GPU is visible on this machine; use --workers N for CPU workers"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [v.strip() for v in visible.split(",")][:count]
    return [str(i) for i in range(count)]


def worker_children(
    *,
    gpus: list[str] | None,
    workers: int,
    exit_when_idle: bool,
    extra_args: list[str],
    threads: int | None = None,
) -> list[Child]:
    """The children to run: one per GPU, or ``workers`` CPU workers sharing the cores."""
    base = [sys.executable, "-m", "sweep", "worker", *extra_args]
    if exit_when_idle:
        base.append("--exit-when-idle")
    if gpus:
        return [
            Child(
                label=f"gpu{gpu}",
                args=[*base, "--device", "cuda:0"],
                env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu},
            )
            for gpu in gpus
        ]
    # Two torch processes with default threads on 2 cores ran 5-7x slower than one.
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    return [
        Child(
            label=f"cpu{i}",
            args=[*base, "--device", "cpu"],
            env={**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
        )
        for i in range(workers)
    ]


class Supervisor:
    """Starts the children, restarts one that dies, and stops them all on SIGTERM/SIGINT."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.stopping = threading.Event()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info(
            "%s received: stopping %d workers", signal.Signals(signum).name, len(self.children)
        )
        self.stopping.set()

    def run(self) -> int:
        """Supervise until stopped or until every child exited cleanly; returns 0."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for child in self.children:
            child.start()
        while not self.stopping.is_set() and not all(c.done for c in self.children):
            for child in self.children:
                self._check(child)
            self.stopping.wait(0.5)
        self._stop_all()
        return 0

    def _check(self, child: Child) -> None:
        if child.done or child.proc is None:
            return
        code = child.proc.poll()
        if code is None:
            return
        if code == 0:  # it stopped on purpose (idle, or a signal of its own)
            child.done = True
            log.info("worker %s exited", child.label)
            return
        low, high = RESTART_BACKOFF_S
        delay = min(high, low * 2**child.restarts)
        # A child that ran a while before dying gets a fresh backoff.
        if time.monotonic() - child.started_at > 60:
            child.restarts, delay = 0, low
        log.warning("worker %s died (exit %s); restarting in %.0f s", child.label, code, delay)
        if self.stopping.wait(delay):
            return
        child.restarts += 1
        child.start()

    def _stop_all(self) -> None:
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
