"""The `sweep` command as people run it: a real `sweep api`, the CLI in a subprocess.

Exit codes: 0 ok, 1 error (one line on stderr, no traceback unless --debug), 2 usage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import SWEEP, Processes, free_port

FAST = ["--task", "synthetic", "--epochs", "3", "--pruner", "none"]


@dataclass
class Cli:
    procs: Processes
    api_url: str
    tmp: Path

    def run(self, *args: str, api: bool = True, env: dict[str, str] | None = None) -> Result:
        extra = ["--api", self.api_url] if api else []
        done = subprocess.run(
            [*SWEEP, *args, *extra],
            env=env or self.procs.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def work(self) -> None:
        worker = self.procs.run("worker", "--device", "cpu", "--exit-when-idle")
        assert worker.returncode == 0, worker.stderr


@dataclass
class Result:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The error line, checking that there is exactly one and no traceback."""
        assert self.code == 1, (self.out, self.err)
        assert "Traceback" not in self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self.err
        return lines[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A migrated SQLite file, `sweep api` on it, and two sweeps run by a worker."""
    tmp = tmp_path_factory.mktemp("cli")
    env = {
        **os.environ,
        "SWEEP_DATABASE_URL": f"sqlite:///{tmp / 'cli.db'}",
        "SWEEP_POLL_INTERVAL": "0.2",
        "SWEEP_MAX_POLL_INTERVAL": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("SWEEP_API_URL", None)  # every command gets --api
    procs = Processes(env, tmp)
    assert procs.run("db", "upgrade").returncode == 0
    api = procs.api()
    made = Cli(procs, str(api.base_url).rstrip("/"), tmp)
    submitted = made.run(
        "submit", "done", *FAST, "--n-trials", "6", "--sampler", "random",
        "--priority", "3", "--max-concurrent", "2",
    )  # fmt: skip
    assert submitted.code == 0 and "queued sweep done: 6 trials" in submitted.out, submitted
    spec = tmp / "broken.json"
    spec.write_text(json.dumps({"task_options": {"fail": True}, "max_attempts": 1}))
    assert made.run("submit", "broken", *FAST, "--n-trials", "2", "--spec", str(spec)).code == 0
    made.work()
    yield made
    procs.stop_all()


def test_watch_draws_progress_eta_and_best_then_exits_0(cli: Cli) -> None:
    watched = cli.run("watch", "done", "--interval", "0.2")
    assert watched.code == 0, watched.err
    assert "6/6" in watched.out and "eta" in watched.out
    best = json.loads(cli.run("best", "done", "--json").out)
    assert f"best val loss {best['value']:.4f} (trial {best['number']})" in watched.out


def test_watch_of_a_failed_sweep_exits_1_with_its_error(cli: Cli) -> None:
    line = cli.run("watch", "broken", "--interval", "0.2").one_line_error()
    assert "sweep broken failed" in line and "synthetic task asked to fail" in line


def test_ls_show_best_and_importance_print_tables_and_json(cli: Cli) -> None:
    listed = cli.run("ls")
    assert listed.code == 0 and "done" in listed.out and "6 / 6" in listed.out
    page = json.loads(cli.run("ls", "--json").out)
    assert {s["name"] for s in page["items"]} == {"done", "broken"}

    shown = cli.run("show", "done")
    assert shown.code == 0 and "completed" in shown.out and "random" in shown.out
    assert json.loads(cli.run("show", "done", "--json").out)["trials"] == {"COMPLETE": 6}
    assert re.search(r"max_concurrent\s+│ 2 ", shown.out) and re.search(
        r"priority\s+│ 3 ", shown.out
    )
    assert "0 / 2" in listed.out  # running / cap

    top = json.loads(cli.run("best", "done", "-k", "3", "--json").out)
    assert [t["fresh_mean"] for t in top] == sorted(t["fresh_mean"] for t in top)
    assert len(top) == 3
    table = cli.run("best", "done", "-k", "3").out
    assert all(str(t["number"]) in table and f"{t['value']:.4f}" in table for t in top)
    assert all(f"{t['fresh_mean']:.4f}" in table for t in top)
    best = json.loads(cli.run("best", "done", "--json").out)
    assert best["number"] == top[0]["number"] and best["runner_up"]["number"] == top[1]["number"]
    said = cli.run("best", "done").out
    if best["decided"]:
        assert f"decided: trial {best['number']} beats trial {top[1]['number']}" in said
    else:
        assert f"indistinguishable from trial {top[1]['number']}" in said
    seeds = best["baseline"]["fresh_seeds"]  # racing (the default) may have added some to 3
    assert seeds >= 3 and f"unregularized baseline (p=0, λ=0) over {seeds} seed(s)" in said

    found = json.loads(cli.run("importance", "done", "--json").out)
    assert set(found["importances"]) == {"dropout", "weight_decay"} and found["trials"] == 6
    table = cli.run("importance", "done").out
    assert "from 6 completed trials" in table
    assert all(f"{share:.3f}" in table for share in found["importances"].values())


def test_api_errors_are_one_line_and_exit_1(cli: Cli) -> None:
    assert "404: no sweep named 'nope'" in cli.run("show", "nope").one_line_error()
    line = cli.run("importance", "broken").one_line_error()
    assert "409" in line and "at least 5" in line
    line = cli.run("best", "broken").one_line_error()
    assert "no trial of sweep 'broken' has completed yet" in line
    line = cli.run("submit", "x", *FAST, "--sampler", "annealing").one_line_error()
    assert "422" in line and "'cmaes'" in line  # the valid names
    options = '{"n_warmup_steps": 9}'
    line = cli.run("submit", "x", *FAST, "--pruner-options", options).one_line_error()
    assert "unknown option 'n_warmup_steps' for pruner 'none'" in line


def test_an_unreachable_api_exits_1_with_the_traceback_only_under_debug(cli: Cli) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    plain = cli.run("ls", "--api", down, api=False)
    assert "cannot reach the API" in plain.one_line_error()
    debug = cli.run("--debug", "ls", "--api", down, api=False)
    assert debug.code == 1 and "Traceback" in debug.err and "ConnectError" in debug.err


def test_an_unexpected_error_is_one_line_unless_debug(cli: Cli) -> None:
    env = {**cli.procs.env, "SWEEP_DATABASE_URL": f"sqlite:///{cli.tmp / 'no-dir' / 'x.db'}"}
    line = cli.run("db", "upgrade", api=False, env=env).one_line_error()
    assert "OperationalError" in line and "--debug" in line
    debug = cli.run("--debug", "db", "upgrade", api=False, env=env)
    assert debug.code == 1 and "Traceback" in debug.err


@pytest.mark.parametrize(
    "args",
    [
        ["show"],  # missing NAME
        ["ls", "--bogus"],
        ["best", "done", "-k", "many"],
        ["submit", "x", "--sampler-options", "[1]"],
        ["submit", "x", "--pruner-options", "{not json"],
        ["enqueue", "done", "--param", "dropout"],  # no value
    ],
)
def test_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    result = cli.run(*args)
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err and "Usage:" in result.err


def test_enqueue_queues_a_configuration_and_submit_warm_starts(cli: Cli) -> None:
    warm = cli.run("submit", "steer", *FAST, "--n-trials", "2", "--warm-start-from", "done")
    assert warm.code == 0 and "started from 6 trials of done" in warm.out, warm
    queued = cli.run("enqueue", "steer", "--param", "dropout=0.3", "--param", "weight_decay=1e-4")
    assert queued.code == 0, queued.err
    assert "queued trial 6 of steer: dropout=0.3, weight_decay=0.0001" in queued.out
    line = cli.run("enqueue", "steer", "--param", "dropout=0.3").one_line_error()
    assert "422" in line and "params.weight_decay" in line
    shown = json.loads(cli.run("show", "steer", "--json").out)
    assert shown["configurations_started"] == 1 and shown["copied_trials"] == 6
