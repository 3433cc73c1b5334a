"""The ``sweep`` command. Thin: parses, calls sweep/* or the API, prints."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sweep.config import Settings

app = typer.Typer(
    help="Tune dropout and weight decay with Optuna, as a service.", no_args_is_help=True
)
db_app = typer.Typer(
    help="The database schema (service tables and Optuna's).", no_args_is_help=True
)
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

TERMINAL = ("completed", "cancelled", "failed")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
ApiOpt = Annotated[
    str | None, typer.Option("--api", help="API base URL [default: SWEEP_API_URL or :8000]")
]


def _fail(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: show the rule, not a traceback
        _fail(f"bad configuration: {exc}")


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


class Api:
    """A small client of the sweep API for the CLI commands."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = (base_url or _settings().api_url).rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=30)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the API at {self.base_url} ({exc}); is `sweep api` running?")
        if response.status_code >= 400:
            _fail(f"{response.status_code}: {_error_text(response)}")
        return response.json()

    def get_optional(self, path: str) -> Any | None:
        """GET that answers None on 404 (e.g. no best trial yet)."""
        try:
            response = self._client.get(path)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None


def _error_text(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):  # pydantic's 422: field and rule for each problem
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
        )
    return str(detail)


# ---- serving and working -------------------------------------------------------------------


@app.command()
def api(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs)."""
    import uvicorn

    from api.app import create_app

    _logging()
    settings = _settings()
    console.print(f"sweep API on http://{host}:{port} (store: {settings.safe_database_url})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command()
def worker(
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="exit once no sweep has work")
    ] = False,
    gpus: Annotated[
        str | None,
        typer.Option(help="'all' or indices like 0,1: one worker process per GPU"),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=256, help="CPU worker processes sharing the cores")
    ] = 1,
) -> None:
    """Pull trials of running sweeps from the database and train them."""
    from sweep.supervisor import NoGpuError, Supervisor, visible_gpu_ids, worker_children
    from sweep.worker import Worker

    _logging()
    settings = _settings()
    if gpus is None and workers == 1:
        raise typer.Exit(Worker(settings, device=device, exit_when_idle=exit_when_idle).run())
    try:
        gpu_ids = visible_gpu_ids(gpus) if gpus is not None else None
    except (NoGpuError, ValueError) as exc:
        _fail(str(exc))
    children = worker_children(
        gpus=gpu_ids, workers=workers, exit_when_idle=exit_when_idle, extra_args=[]
    )
    console.print(f"starting {len(children)} workers: {', '.join(c.label for c in children)}")
    raise typer.Exit(Supervisor(children).run())


# ---- database ------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the service's tables and Optuna's schema."""
    from sweep.db import make_engine
    from sweep.schema import current_revision, upgrade

    settings = _settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    console.print(f"database {settings.safe_database_url} at revision {current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "base") -> None:
    """Migrate the service's tables down to REVISION (Optuna's tables are kept)."""
    from sweep.db import make_engine
    from sweep.schema import downgrade

    downgrade(make_engine(_settings().database_url), revision)
    console.print(f"service tables at {revision}")


# ---- talking to the API --------------------------------------------------------------------


@app.command()
def submit(
    name: Annotated[str, typer.Argument(help="the sweep's unique name")],
    task: Annotated[str, typer.Option(help="registered task")] = "digits-mlp",
    n_trials: Annotated[int, typer.Option(help="configurations to try")] = 40,
    epochs: Annotated[int, typer.Option(help="epochs per trial")] = 120,
    sampler: Annotated[str, typer.Option(help="tpe, random, grid, qmc or gp")] = "tpe",
    pruner: Annotated[str, typer.Option(help="median, percentile, hyperband, …, none")] = "median",
    seed: Annotated[int, typer.Option(help="seed of the sampler and of trial 0")] = 0,
    spec: Annotated[
        Path | None, typer.Option(help="JSON file with more fields of the create body")
    ] = None,
    api_url: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a sweep through the API."""
    body: dict[str, Any] = json.loads(spec.read_text()) if spec else {}
    body.update(
        name=name,
        task=task,
        n_trials=n_trials,
        epochs=epochs,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
    )
    created = Api(api_url).request("POST", "/v1/sweeps", json=body)
    if as_json:
        console.print_json(data=created)
        return
    console.print(f"queued sweep [bold]{created['name']}[/bold]: {created['n_trials']} trials")


@app.command("ls")
def list_sweeps(
    status: Annotated[str | None, typer.Option(help="only sweeps in this status")] = None,
    api_url: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List sweeps, newest first."""
    params = {"status": status} if status else {}
    page = Api(api_url).request("GET", "/v1/sweeps", params=params)
    if as_json:
        console.print_json(data=page)
        return
    table = Table("name", "status", "task", "done / budget", "running", "created")
    for s in page["items"]:
        table.add_row(
            s["name"],
            s["status"],
            s["task"],
            f"{_done(s)} / {s['n_trials']}",
            str(s["trials"].get("RUNNING", 0)),
            s["created_at"][:19],
        )
    console.print(table)


@app.command()
def show(name: str, api_url: ApiOpt = None, as_json: JsonOpt = False) -> None:
    """Show one sweep: status, budget and trial counts."""
    s = Api(api_url).request("GET", f"/v1/sweeps/{name}")
    if as_json:
        console.print_json(data=s)
        return
    table = Table(show_header=False)
    for key in ("name", "status", "task", "n_trials", "epochs", "sampler", "pruner", "penalty"):
        table.add_row(key, str(s[key]))
    table.add_row("done", f"{_done(s)} / {s['n_trials']}")
    table.add_row("trials", ", ".join(f"{k}={v}" for k, v in sorted(s["trials"].items())) or "-")
    if s["error"]:
        table.add_row("error", s["error"])
    console.print(table)


@app.command()
def best(
    name: str,
    k: Annotated[int, typer.Option("-k", help="how many configurations")] = 1,
    api_url: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the best configuration(s) found so far."""
    rows = Api(api_url).request("GET", f"/v1/sweeps/{name}/top", params={"k": k})
    if not rows:
        _fail(f"no trial of sweep {name!r} has completed yet")
    if as_json:
        console.print_json(data=rows if k > 1 else rows[0])
        return
    console.print(_trials_table(rows))


def _trials_table(rows: list[dict[str, Any]]) -> Table:
    params = sorted({p for r in rows for p in r["params"]})
    table = Table("trial", *params, "val loss", "epoch", "val acc", "gap")
    for r in rows:
        m = r["metrics"]
        table.add_row(
            str(r["number"]),
            *(f"{r['params'][p]:.4g}" for p in params),
            f"{r['value']:.4f}",
            str(r["epoch"]),
            f"{m.get('val_accuracy', float('nan')):.3f}",
            f"{m.get('generalization_gap', float('nan')):.3f}",
        )
    return table


def _done(s: dict[str, Any]) -> int:
    running = s["trials"].get("RUNNING", 0) + s["trials"].get("WAITING", 0)
    return int(s["configurations_started"]) - int(running)


@app.command()
def watch(
    name: str,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    api_url: ApiOpt = None,
) -> None:
    """Show a live progress bar until the sweep ends, then the best configuration."""
    watch_sweep(Api(api_url), name, interval)


def watch_sweep(client: Api, name: str, interval: float = 1.0) -> dict[str, Any]:
    """Poll the sweep, drawing trials done / budget and the best value so far."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[best]}"),
        console=console,
    ) as progress:
        bar = progress.add_task(name, total=None, best="")
        while True:
            s = client.request("GET", f"/v1/sweeps/{name}")
            top = client.get_optional(f"/v1/sweeps/{name}/best")
            best_text = f"best val loss {top['value']:.4f} (trial {top['number']})" if top else ""
            progress.update(
                bar,
                total=s["n_trials"],
                completed=_done(s),
                best=best_text,
                description=f"{name} [{s['status']}]",
            )
            if s["status"] in TERMINAL:
                break
            time.sleep(interval)
    if s["status"] == "failed":
        _fail(f"sweep {name} failed: {s['error']}")
    if top:
        console.print(_trials_table([top]))
    return dict(s)


# ---- the newcomer's one command ------------------------------------------------------------


@app.command()
def up(
    n_trials: Annotated[int, typer.Option(help="trials of the default sweep")] = 30,
    epochs: Annotated[int, typer.Option(help="epochs per trial")] = 120,
    port: Annotated[int, typer.Option(help="API port on 127.0.0.1")] = 8000,
) -> None:
    """Migrate, start the API and a worker, run a default sweep, then keep serving until Ctrl-C."""
    import signal
    import subprocess
    from datetime import datetime

    from sweep.db import make_engine
    from sweep.schema import upgrade

    settings = _settings()
    upgrade(make_engine(settings.database_url))
    console.print(f"store: {settings.safe_database_url} (migrated)")
    logs = Path(".sweep")
    logs.mkdir(exist_ok=True)
    base = [sys.executable, "-m", "sweep"]
    children = []
    for name, args in (("api", ["api", "--port", str(port)]), ("worker", ["worker"])):
        log_file = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        children.append(subprocess.Popen([*base, *args], stdout=log_file, stderr=log_file))
    console.print(f"started the API and one worker; logs in {logs}/api.log and {logs}/worker.log")

    def stop_children(*_args: object) -> NoReturn:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=60)
        console.print("stopped")
        raise typer.Exit(0)

    signal.signal(signal.SIGTERM, stop_children)
    client = Api(f"http://127.0.0.1:{port}")
    try:
        _wait_ready(client, children)
        name = "digits-" + datetime.now().strftime("%Y%m%d-%H%M%S")
        client.request(
            "POST",
            "/v1/sweeps",
            json={
                "name": name,
                "n_trials": n_trials,
                "epochs": epochs,
                "description": "the default sweep of `sweep up`",
            },
        )
        console.print(
            f"queued [bold]{name}[/bold]: {n_trials} trials of digits-mlp, "
            f"dropout in [0.2, 0.5], weight decay in [1e-5, 1e-2] (log)"
        )
        watch_sweep(client, name)
        console.print(
            f"\nAPI serving at http://127.0.0.1:{port} (docs: /docs). "
            f"Try: sweep best {name} -k 5   |   Ctrl-C to stop."
        )
        while all(child.poll() is None for child in children):
            time.sleep(1)
        _fail("a child process exited; see .sweep/*.log")
    except KeyboardInterrupt:
        stop_children()


def _wait_ready(client: Api, children: list[Any]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if client.get_optional("/readyz") is not None:
            return
        if any(child.poll() is not None for child in children):
            _fail("the API or worker exited at start; see .sweep/api.log and .sweep/worker.log")
        time.sleep(0.3)
    _fail("the API did not become ready in 120 s; see .sweep/api.log")
