"""Chaos: PostgreSQL restarts, worker SIGKILLs and SIGSTOPs during one sweep, through PgBouncer.

Four `sweep worker` processes and `sweep api` reach a private PostgreSQL cluster
(never the shared server) through PgBouncer in transaction mode. During one sweep
of the `synthetic` task, at random moments: PostgreSQL restarts (fast shutdown, every
connection cut), a worker mid-trial is SIGKILLed and a fresh one started (as a
Deployment or supervisor would), and a worker mid-trial is SIGSTOPped past the grace
period, then SIGCONTed. A thread polls the API throughout. Afterwards, from the study:

  trials lost        configurations of the budget that never finished (target 0)
  over-run           configurations run more times than max_attempts allows, or
                     finished twice (target 0)
  wrongly failed     FAIL trials no kill or stop explains (target 0)
  API 5xx            answers 500-599 other than 503 (target 0); 503s are counted
  budget exact       exactly n_trials configurations, each finished once, sweep completed

`python -m benchmarks.chaos` (20 restarts, 20 SIGKILLs, 5 SIGSTOPs by default).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import optuna
from optuna.trial import FrozenTrial, TrialState

from benchmarks._clusters import PrivatePostgres, free_port, pgbouncer, private_postgres
from sweep.store.engine import make_engine
from sweep.store.migrations import upgrade

warnings.filterwarnings("ignore")
SWEEP = [sys.executable, "-m", "sweep"]
NAME = "chaos"
WORKERS = 4
POOL_SIZE = 8  # server connections PgBouncer opens for all the clients together


@dataclass
class ChaosReport:
    """What a chaos run did and what the study and the API showed afterwards."""

    n_trials: int
    max_attempts: int
    events: Counter[str] = field(default_factory=Counter)
    hit_trials: int = 0  # kills and stops that caught a worker with a trial running
    lost: int = 0
    over_run: int = 0
    wrongly_failed: list[str] = field(default_factory=list)
    failed: int = 0  # FAIL trials, each explained by a kill or a stop unless wrongly failed
    left_over: int = 0  # trials still RUNNING or WAITING at the end
    budget_exact: bool = False
    status: str = ""
    api_codes: Counter[int] = field(default_factory=Counter)
    api_unreachable: int = 0
    worker_crashes: list[str] = field(default_factory=list)  # exited unasked: code, log tail
    elapsed_s: float = 0.0

    @property
    def api_5xx(self) -> int:
        """Answers 500-599 other than 503 (a database outage is a 503)."""
        return sum(n for code, n in self.api_codes.items() if code >= 500 and code != 503)

    def problems(self) -> list[str]:
        """Every claim the run broke; empty when all hold."""
        found = [
            f"{self.lost} trials lost" if self.lost else "",
            f"{self.over_run} configurations over-run" if self.over_run else "",
            f"wrongly failed: {self.wrongly_failed}" if self.wrongly_failed else "",
            f"{self.left_over} trials left running or waiting" if self.left_over else "",
            "" if self.budget_exact else f"budget not exact (sweep {self.status})",
            f"API 5xx other than 503: {dict(self.api_codes)}" if self.api_5xx else "",
            f"{self.api_unreachable} API requests unanswered" if self.api_unreachable else "",
        ]
        return [p for p in found if p] + [f"exited unasked: {c}" for c in self.worker_crashes]

    def lines(self) -> list[str]:
        """The report, one figure a line."""
        return [
            f"events: {dict(self.events)} ({self.hit_trials} kills/stops caught a trial) "
            f"in {self.elapsed_s:.0f} s",
            f"trials lost:        {self.lost}  (configurations: {self.n_trials})",
            f"over-run configs:   {self.over_run}  (max_attempts {self.max_attempts})",
            f"wrongly failed:     {len(self.wrongly_failed)}  (failed: {self.failed}, each"
            " retried)",
            f"API 5xx (not 503):  {self.api_5xx}  (answers: {dict(sorted(self.api_codes.items()))},"
            f" unanswered: {self.api_unreachable})",
            f"budget exact:       {self.budget_exact}  (sweep {self.status})",
            f"worker crashes:     {len(self.worker_crashes)}",
            *self.worker_crashes,
        ]


class Fleet:
    """The worker processes, restarted when killed, as a supervisor would."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started_as: dict[int, int] = {}  # pid → number of its log file
        self.started = 0
        self.crashes: list[str] = []  # for each worker that exited unasked: code, log tail

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.logs / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [*SWEEP, "worker", "--device", "cpu"], env=self.env, stdout=log, stderr=log
        )
        self.procs.append(proc)
        self.started_as[proc.pid] = self.started
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs.remove(proc)
        self.start()

    def restart_exited(self) -> None:
        for proc in [p for p in self.procs if p.poll() is not None]:
            log = self.logs / f"worker-{self.started_as[proc.pid]}.log"
            tail = log.read_text(errors="replace").splitlines()[-15:]
            said = "\n  ".join(tail)
            self.crashes.append(f"worker {proc.pid} exited with {proc.returncode}:\n  {said}")
            self.procs.remove(proc)
            self.start()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=60)


class ApiPoller(threading.Thread):
    """Reads the sweep from the API every ``interval`` s and counts the status codes."""

    def __init__(self, client: httpx.Client, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.client, self.interval = client, interval
        self.codes: Counter[int] = Counter()
        self.unreachable = 0
        self.finished = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            for path in (f"/v1/sweeps/{NAME}", f"/v1/sweeps/{NAME}/trials?limit=5"):
                try:
                    response = self.client.get(path)
                except httpx.TransportError:
                    self.unreachable += 1
                    continue
                self.codes[response.status_code] += 1
                if _has_ended(path, response):
                    self.finished.set()


def _has_ended(path: str, response: httpx.Response) -> bool:
    if not path.endswith(NAME) or response.status_code != 200:
        return False
    return response.json()["status"] in ("completed", "failed", "cancelled")


def _retrying(read: Callable[[], Any]) -> Any:
    """``read`` from the database, waiting out a restart the run itself caused."""
    for _ in range(60):
        try:
            return read()
        except Exception:
            time.sleep(0.5)
    return read()


def _running_of(study: optuna.Study, pid: int) -> FrozenTrial | None:
    for t in _retrying(lambda: study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
        if str(t.user_attrs.get("worker", "")).split(":")[1:2] == [str(pid)]:
            return t
    return None


def _start_api(env: dict[str, str], logs: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    made = subprocess.run(
        [*SWEEP, "token", "create", "--role", "user", "--name", "chaos"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    port = free_port()
    log = open(logs / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*SWEEP, "api", "--port", str(port)], env=env, stdout=log, stderr=log)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        timeout=30,
        headers={"Authorization": f"Bearer {made.stdout.strip()}"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return proc, client
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the API did not become ready:\n" + (logs / "api.log").read_text())


def _environment(url: str, grace: float) -> dict[str, str]:
    return {
        **os.environ,
        "SWEEP_DATABASE_URL": url,
        "SWEEP_TRANSACTION_POOLER": "true",
        "SWEEP_HEARTBEAT_INTERVAL": "1",
        "SWEEP_GRACE_PERIOD": str(grace),
        "SWEEP_REAP_INTERVAL": "1",
        "SWEEP_POLL_INTERVAL": "0.2",
        "SWEEP_MAX_POLL_INTERVAL": "1",
        "OMP_NUM_THREADS": "1",
    }


def run_chaos(
    pg: PrivatePostgres,
    logs: Path,
    *,
    restarts: int,
    kills: int,
    stops: int,
    n_trials: int,
    seed: int = 0,
    epochs: int = 5,
    epoch_seconds: float = 0.2,
    grace: float = 10.0,
    max_attempts: int = 10,
    finish_within_s: float = 300.0,
    pgbouncer_binary: str = "pgbouncer",
) -> ChaosReport:
    """One chaos run on the private cluster ``pg`` (see the module's docstring); the report."""
    rng = random.Random(seed)
    report = ChaosReport(n_trials=n_trials, max_attempts=max_attempts)
    direct = pg.create_database(NAME)
    engine = make_engine(direct)
    upgrade(engine)
    engine.dispose()
    with pgbouncer(pgbouncer_binary, NAME, pg.port, POOL_SIZE) as (pooled, _):
        env = _environment(pooled, grace)
        api, client = _start_api(env, logs)
        fleet = Fleet(env, logs)
        try:
            created = client.post(
                "/v1/sweeps",
                json={
                    "name": NAME,
                    "task": "synthetic",
                    "n_trials": n_trials,
                    "epochs": epochs,
                    "task_options": {"epoch_seconds": epoch_seconds},
                    "pruner": "none",
                    "baseline": False,
                    "reevaluate_top": 0,
                    "max_attempts": max_attempts,
                },
            )
            assert created.status_code == 201, created.text
            for _ in range(WORKERS):
                fleet.start()
            poller = ApiPoller(client)
            poller.start()
            started = time.monotonic()
            study = optuna.load_study(study_name=NAME, storage=direct)
            victims = _make_chaos(pg, fleet, study, rng, report, poller, restarts, kills, stops)
            deadline = time.monotonic() + finish_within_s
            while not poller.finished.is_set() and time.monotonic() < deadline:
                fleet.restart_exited()
                time.sleep(0.5)
            report.elapsed_s = time.monotonic() - started
            poller.halt.set()
            poller.join()
            report.api_codes, report.api_unreachable = poller.codes, poller.unreachable
            report.worker_crashes = fleet.crashes
            report.status = _retrying(lambda: client.get(f"/v1/sweeps/{NAME}")).json()["status"]
        finally:
            fleet.stop()
            api.terminate()
            api.wait(timeout=30)
    _judge(report, optuna.load_study(study_name=NAME, storage=direct), victims)
    report.budget_exact = report.budget_exact and report.status == "completed"
    return report


@dataclass
class Victims:
    """Who the chaos hit: worker pids killed or stopped, and when (for trials without a pid)."""

    pids: set[int] = field(default_factory=set)
    moments: list[datetime] = field(default_factory=list)


def _make_chaos(
    pg: PrivatePostgres,
    fleet: Fleet,
    study: optuna.Study,
    rng: random.Random,
    report: ChaosReport,
    poller: ApiPoller,
    restarts: int,
    kills: int,
    stops: int,
) -> Victims:
    events = ["restart"] * restarts + ["kill"] * kills + ["stop"] * stops
    rng.shuffle(events)
    victims = Victims()
    stopped: set[int] = set()
    grace = float(fleet.env["SWEEP_GRACE_PERIOD"])
    for event in events:
        time.sleep(rng.uniform(0.3, 1.5))
        fleet.restart_exited()
        if poller.finished.is_set():
            break  # the sweep ended: the rest would not be during it
        if event == "restart":
            pg.restart()
            report.events[event] += 1
            continue
        candidates = [p for p in fleet.procs if p.pid not in stopped]
        proc = rng.choice(candidates)
        deadline = time.monotonic() + 15  # a random moment once it is training
        while _running_of(study, proc.pid) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        report.hit_trials += _running_of(study, proc.pid) is not None
        victims.pids.add(proc.pid)
        victims.moments.append(datetime.now())
        report.events[event] += 1
        if event == "kill":
            fleet.kill(proc)
        else:  # stopped past the grace period: its trial is reaped and retried meanwhile
            os.kill(proc.pid, signal.SIGSTOP)
            stopped.add(proc.pid)
            resume = threading.Timer(grace + 3, _resume, (proc.pid, stopped))
            resume.daemon = True
            resume.start()
    while stopped:
        time.sleep(0.2)
    return victims


def _resume(pid: int, stopped: set[int]) -> None:
    os.kill(pid, signal.SIGCONT)
    stopped.discard(pid)


def _judge(report: ChaosReport, study: optuna.Study, victims: Victims) -> None:
    trials = study.get_trials(deepcopy=False)
    configuration: Counter[int] = Counter()
    finished: Counter[int] = Counter()
    for t in trials:
        number = int(t.system_attrs.get("failed_trial", t.number))
        configuration[number] += 1
        finished[number] += t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            report.left_over += 1
        report.failed += t.state == TrialState.FAIL
        if t.state == TrialState.FAIL and not _explained(t, victims):
            report.wrongly_failed.append(f"#{t.number}: {t.user_attrs.get('error', 'reaped')}")
    report.lost = report.n_trials - sum(1 for n in configuration if finished[n])
    report.over_run = sum(
        1 for n, runs in configuration.items() if runs > report.max_attempts or finished[n] > 1
    )
    report.budget_exact = len(configuration) == report.n_trials and all(
        finished[n] == 1 for n in configuration
    )


def _explained(trial: FrozenTrial, victims: Victims) -> bool:
    """A failed trial is explained by a kill or stop of the worker running it, never by an
    error it recorded (a database restart must not fail a trial)."""
    error = str(trial.user_attrs.get("error", ""))
    if error.startswith("released by its worker"):
        return True  # given back on SIGTERM: the fleet stopped before the sweep ended
    if error:
        return False
    worker = str(trial.user_attrs.get("worker", ""))
    if worker:
        return int(worker.split(":")[1]) in victims.pids
    # killed before its lease recorded the worker: a kill or stop just after it started
    start = trial.datetime_start or datetime.min
    return any(start <= m <= start + timedelta(seconds=3) for m in victims.moments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from benchmarks._clusters import pgbouncer_binary

    binary = pgbouncer_binary()
    if binary is None:
        sys.exit("pgbouncer is not installed (apt-get install -y pgbouncer)")
    with tempfile.TemporaryDirectory() as logs, private_postgres() as pg:
        report = run_chaos(
            pg,
            Path(logs),
            restarts=args.restarts,
            kills=args.kills,
            stops=args.stops,
            n_trials=args.trials,
            seed=args.seed,
            pgbouncer_binary=binary,
        )
    print("\n".join(report.lines()))
    for problem in report.problems():
        print("PROBLEM:", problem)


if __name__ == "__main__":
    main()
