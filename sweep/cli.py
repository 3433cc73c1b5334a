"""The ``sweep`` command. Thin: parses, calls sweep/* or the API, prints."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from sweep.config import Settings, is_loopback
from sweep.logs import LogFormat, LogLevel, configure_logging

if TYPE_CHECKING:
    from datetime import datetime

    from sweep.tokens import TokenInfo


class SweepApp(typer.Typer):
    """Exit codes: 0 ok, 1 error (one line on stderr; the traceback with --debug), 2 usage."""

    debug = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if self.debug:
                raise
            first_line = (str(exc).strip().splitlines() or [""])[0]
            err_console.print(
                f"[red]error:[/red] {escape(type(exc).__name__)}: {escape(first_line)} "
                "(run with --debug for the traceback)",
                highlight=False,
            )
            sys.exit(1)


app = SweepApp(
    help="Tune dropout and weight decay with Optuna, as a service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold the database password
)
db_app = typer.Typer(
    help="The database schema (service tables and Optuna's).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
token_app = typer.Typer(
    help="API tokens (talks to the database directly, like `sweep db`).", no_args_is_help=True
)
app.add_typer(token_app, name="token")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

TERMINAL = ("completed", "cancelled", "failed")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
LogFormatOpt = Annotated[
    LogFormat, typer.Option("--log-format", help="text lines, or one JSON object per line")
]
ApiOpt = Annotated[
    str | None, typer.Option("--api", help="API base URL [default: SWEEP_API_URL or :8000]")
]


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback of an unexpected error")
    ] = False,
) -> None:
    """Tune dropout and weight decay with Optuna, as a service."""
    SweepApp.debug = debug


def _fail(message: str) -> NoReturn:
    if SweepApp.debug and sys.exc_info()[1] is not None:
        traceback.print_exc()
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: show the rule, not a traceback
        _fail(f"bad configuration: {exc}")


class Api:
    """A small client of the sweep API for the CLI commands."""

    def __init__(self, base_url: str | None, token: str | None = None) -> None:
        settings = _settings()
        self.base_url = (base_url or settings.api_url).rstrip("/")
        token = token or (settings.token.get_secret_value() if settings.token else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=30, headers=headers)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the API at {self.base_url} ({exc}); is `sweep api` running?")
        if response.status_code == 401:
            _fail(f"401: {_error_text(response)} (the CLI sends the token in SWEEP_TOKEN)")
        if response.status_code >= 400:
            _fail(f"{response.status_code}: {_error_text(response)}")
        return response.json()

    def get_bytes(self, path: str) -> bytes:
        """GET a binary body (a chart), failing with the API's message on an error."""
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the API at {self.base_url} ({exc}); is `sweep api` running?")
        if response.status_code >= 400:
            _fail(f"{response.status_code}: {_error_text(response)}")
        return response.content

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
    log_format: LogFormatOpt = "text",
) -> None:
    """Serve the REST API (OpenAPI docs at /docs, Prometheus metrics at /metrics)."""
    import uvicorn

    from api.app import create_app

    configure_logging(log_format)
    settings = _settings()
    if not settings.auth and not is_loopback(host):
        _fail(
            f"refusing to serve on {host} with authentication off (SWEEP_AUTH=false): anyone "
            "on the network could queue work. Turn auth on (unset SWEEP_AUTH) and use "
            "`sweep token create`, or bind to 127.0.0.1."
        )
    logging.getLogger("sweep.api").info(
        "sweep API on http://%s:%d (store: %s)", host, port, settings.safe_database_url
    )
    if settings.auth:
        console.print("auth on: send `Authorization: Bearer <token>` (`sweep token create`)")
    else:
        console.print("[yellow]auth OFF[/yellow] (SWEEP_AUTH=false): serving on this machine only")
    # log_config=None: uvicorn's own lines go through the handler set up above.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", log_config=None)


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
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="torch threads per worker [1; cores/N with --workers; cores with --batch]",
        ),
    ] = None,
    batch: Annotated[
        int,
        typer.Option(min=1, max=256, help="train up to K trials of a sweep at once, stacked"),
    ] = 1,
    log_format: LogFormatOpt = "text",
    log_level: Annotated[LogLevel, typer.Option(help="debug adds a line per epoch")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve this worker's claim and epoch timings for Prometheus here"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="address for --metrics-port")] = "127.0.0.1",
) -> None:
    """Pull trials of running sweeps from the database and train them."""
    from sweep.supervisor import NoGpuError, Supervisor, visible_gpu_ids, worker_children
    from sweep.worker import Worker

    configure_logging(log_format, log_level)
    settings = _settings()
    if gpus is None and workers == 1:
        if metrics_port is not None:
            from sweep.metrics import serve_worker_metrics

            serve_worker_metrics(metrics_port, metrics_host)
        worker_ = Worker(
            settings, device=device, exit_when_idle=exit_when_idle, threads=threads, batch=batch
        )
        raise typer.Exit(worker_.run())
    try:
        gpu_ids = visible_gpu_ids(gpus) if gpus is not None else None
    except (NoGpuError, ValueError) as exc:
        _fail(str(exc))
    children = worker_children(
        gpus=gpu_ids,
        workers=workers,
        exit_when_idle=exit_when_idle,
        extra_args=["--log-format", log_format, "--log-level", log_level, "--batch", str(batch)],
        threads=threads,
    )
    if metrics_port is not None:  # one port per child: PORT, PORT+1, …
        for i, child in enumerate(children):
            child.args += ["--metrics-port", str(metrics_port + i), "--metrics-host", metrics_host]
    console.print(f"starting {len(children)} workers: {', '.join(c.label for c in children)}")
    raise typer.Exit(Supervisor(children).run())


@app.command()
def dashboard(
    host: Annotated[
        str, typer.Option(help="address to bind; the dashboard has NO authentication")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8080,
) -> None:
    """Serve optuna-dashboard on the sweep database: every sweep is a study of the same name.

    The dashboard has no authentication, and anyone who reaches it can rename or
    delete studies. Keep it on 127.0.0.1 (the default) and reach it through an SSH
    tunnel, or put an authenticating proxy in front of it.
    """
    from sqlalchemy.exc import OperationalError

    from sweep.db import make_engine
    from sweep.errors import SchemaNotReady
    from sweep.schema import check_ready
    from sweep.study import storage_for

    configure_logging()
    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        check_ready(engine)
    except SchemaNotReady as exc:
        _fail(exc.message)
    except OperationalError as exc:
        _fail(f"cannot reach the database {settings.safe_database_url}: {exc.orig}")
    finally:
        engine.dispose()
    import optuna_dashboard

    console.print(f"optuna-dashboard on http://{host}:{port} (store: {settings.safe_database_url})")
    console.print("it has no authentication: do not expose it beyond a trusted network")
    optuna_dashboard.run_server(storage_for(settings), host=host, port=port)


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


# ---- API tokens ----------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="reader (GET only), user (also sweeps), admin")],
    expires: Annotated[
        str | None, typer.Option(help="lifetime such as 30d, 12h, 2w [default: none]")
    ] = None,
    name: Annotated[str, typer.Option(help="a label to recognise the token by")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Issue a token; its secret is printed once, alone on stdout (for $(…) in scripts)."""
    from sweep import tokens
    from sweep.db import make_engine, make_session_factory, transaction
    from sweep.errors import SweepError

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        lifetime = tokens.parse_duration(expires) if expires else None
        with transaction(make_session_factory(engine)) as session:
            issued = tokens.create_token(session, role, name=name, expires_in=lifetime)
    except SweepError as exc:
        _fail(exc.message)
    info = issued.info
    if as_json:
        typer.echo(json.dumps({**_token_row(info), "token": issued.secret}))
        return
    typer.echo(issued.secret)  # plain, unwrapped: the only line on stdout
    until = f"expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else "no expiry"
    err_console.print(
        f"token {info.id} ({info.role}, {until}); shown only now, stored as a hash: keep it safe"
    )


@token_app.command("ls")
def token_ls(as_json: JsonOpt = False) -> None:
    """List tokens (never their secrets)."""
    from sweep import tokens
    from sweep.db import make_engine, make_session_factory, transaction

    with transaction(make_session_factory(make_engine(_settings().database_url))) as session:
        rows = [_token_row(info) for info in tokens.list_tokens(session)]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("id", "name", "role", "state", "created", "expires", "last used")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["name"],
            row["role"],
            row["state"],
            *((row[k] or "-")[:16] for k in ("created_at", "expires_at", "last_used_at")),
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="the id from `sweep token ls`")],
) -> None:
    """Revoke a token: the API answers 401 to it from now on."""
    from sweep import tokens
    from sweep.db import make_engine, make_session_factory, transaction
    from sweep.errors import SweepError

    try:
        factory = make_session_factory(make_engine(_settings().database_url))
        with transaction(factory) as session:
            info = tokens.revoke_token(session, token_id)
    except SweepError as exc:
        _fail(exc.message)
    console.print(f"token {info.id} ({info.role}) revoked")


def _token_row(info: TokenInfo) -> dict[str, Any]:
    from sweep.models import utcnow

    now = utcnow()
    if info.revoked_at is not None:
        state = "revoked"
    elif not info.active(now):
        state = "expired"
    else:
        state = "active"

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat(timespec="seconds") if moment is not None else None

    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "state": state,
        "created_at": iso(info.created_at),
        "expires_at": iso(info.expires_at),
        "revoked_at": iso(info.revoked_at),
        "last_used_at": iso(info.last_used_at),
    }


# ---- talking to the API --------------------------------------------------------------------


def _json_object(option: str) -> Callable[[str | None], dict[str, Any] | None]:
    """A parser of a JSON object given to ``option``; anything else is a usage error."""

    def parse(text: str | None) -> dict[str, Any] | None:
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint=option) from None
        if not isinstance(value, dict):
            raise typer.BadParameter("give a JSON object, e.g. '{\"key\": 1}'", param_hint=option)
        return value

    return parse


@app.command()
def submit(
    name: Annotated[str, typer.Argument(help="the sweep's unique name")],
    task: Annotated[str, typer.Option(help="registered task")] = "digits-mlp",
    n_trials: Annotated[
        int | None, typer.Option(help="configurations to try [default: 40; grid: its size]")
    ] = None,
    epochs: Annotated[int, typer.Option(help="epochs per trial")] = 120,
    sampler: Annotated[str, typer.Option(help="tpe, random, grid, qmc, gp or cmaes")] = "tpe",
    sampler_options: Annotated[
        dict[str, Any] | None,
        typer.Option(
            metavar="JSON",
            help="e.g. '{\"n_startup_trials\": 5}'",
            parser=_json_object("--sampler-options"),
        ),
    ] = None,
    pruner: Annotated[
        str, typer.Option(help="median, percentile, hyperband, successive-halving or none")
    ] = "median",
    pruner_options: Annotated[
        dict[str, Any] | None,
        typer.Option(
            metavar="JSON",
            help="e.g. '{\"n_warmup_steps\": 30}'",
            parser=_json_object("--pruner-options"),
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the sampler and of trial 0")] = 0,
    spec: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="JSON file with more fields of the create body"
        ),
    ] = None,
    api_url: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a sweep through the API."""
    body: dict[str, Any] = {}
    if spec is not None:
        body = _json_object("--spec")(spec.read_text()) or {}
    given = {
        "n_trials": n_trials,
        "sampler_options": sampler_options,
        "pruner_options": pruner_options,
    }
    body.update(
        name=name,
        task=task,
        epochs=epochs,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        **{key: value for key, value in given.items() if value is not None},
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
    for key in ("sampler_options", "pruner_options"):
        table.add_row(key, ", ".join(f"{k}={v}" for k, v in s.get(key, {}).items()) or "-")
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


@app.command()
def plot(
    name: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write")] = Path(
        "chart.png"
    ),
    api_url: ApiOpt = None,
) -> None:
    """Save the chart: train and validation loss per epoch, best configuration vs p=0, λ=0."""
    output.write_bytes(Api(api_url).get_bytes(f"/v1/sweeps/{name}/chart.png"))
    console.print(f"wrote {output}")


def _trials_table(rows: list[dict[str, Any]]) -> Table:
    params = sorted({p for r in rows for p in r["params"]})
    table = Table("trial", *params, "val loss", "mean ± std (seeds)", "epoch", "val acc", "gap")
    for r in rows:
        m = r["metrics"]
        spread = f" ± {r['std']:.4f}" if r.get("std") is not None else ""
        table.add_row(
            str(r["number"]),
            *(f"{r['params'][p]:.4g}" for p in params),
            f"{r['value']:.4f}",
            f"{r.get('mean', r['value']):.4f}{spread} ({r.get('seeds', 1)})",
            str(r["epoch"]),
            f"{m.get('val_accuracy', float('nan')):.3f}",
            f"{m.get('generalization_gap', float('nan')):.3f}",
        )
    return table


@app.command()
def importance(name: str, api_url: ApiOpt = None, as_json: JsonOpt = False) -> None:
    """How much dropout and weight decay each matter to the validation loss (fANOVA)."""
    found = Api(api_url).request("GET", f"/v1/sweeps/{name}/importance")
    if as_json:
        console.print_json(data=found)
        return
    table = Table("parameter", "importance", "", title=f"from {found['trials']} completed trials")
    for param, share in found["importances"].items():
        table.add_row(param, f"{share:.3f}", "█" * round(share * 40))
    console.print(table)


def _done(s: dict[str, Any]) -> int:
    running = s["trials"].get("RUNNING", 0) + s["trials"].get("WAITING", 0)
    return int(s["configurations_started"]) - int(running)


@app.command()
def watch(
    name: str,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    api_url: ApiOpt = None,
) -> None:
    """Show a live progress bar until the sweep ends, then the best configuration.

    Exits 0 when the sweep completed, 1 when it failed or was cancelled.
    """
    s = watch_sweep(Api(api_url), name, interval)
    if s["status"] == "cancelled":
        _fail(f"sweep {name} was cancelled")


def watch_sweep(client: Api, name: str, interval: float = 1.0) -> dict[str, Any]:
    """Poll the sweep, drawing trials done / budget, time left and the best value so far."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[best]}"),
        console=console,
    ) as progress:
        bar = progress.add_task(name, total=None, best="")
        while True:
            s = client.request("GET", f"/v1/sweeps/{name}")
            top = client.get_optional(f"/v1/sweeps/{name}/best")
            best_text = f"best val loss {top['value']:.4f} (trial {top['number']})" if top else ""
            status = s["status"]
            evaluations = s.get("evaluations", {})
            if status == "running" and _done(s) >= s["n_trials"] and evaluations:
                finished = sum(evaluations.values()) - evaluations.get("WAITING", 0)
                finished -= evaluations.get("RUNNING", 0)
                status = f"evaluating {finished}/{sum(evaluations.values())}"
            progress.update(
                bar,
                total=s["n_trials"],
                completed=_done(s),
                best=best_text,
                description=f"{name} [{status}]",
            )
            if s["status"] in TERMINAL:
                break
            time.sleep(interval)
    if s["status"] == "failed":
        _fail(f"sweep {name} failed: {s['error']}")
    if top:
        console.print(_trials_table([top]))
        baseline = top.get("baseline")
        if baseline and baseline.get("value") is not None:
            console.print(
                f"unregularized baseline (p=0, λ=0, seed {baseline['seed']}): "
                f"val loss {baseline['value']:.4f}; best: {top['mean']:.4f} "
                f"over {top['seeds']} seed(s)"
            )
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

    from sweep import tokens
    from sweep.db import make_engine, make_session_factory, transaction
    from sweep.schema import upgrade

    settings = _settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    console.print(f"store: {settings.safe_database_url} (migrated)")
    factory = make_session_factory(engine)
    issued = None
    if settings.auth:
        with transaction(factory) as session:
            issued = tokens.create_token(session, "user", name="sweep-up")
        console.print(
            "API token for this session (role user; revoked when `sweep up` stops), "
            "for the CLI in another terminal:"
        )
        console.print(f"  export SWEEP_TOKEN={issued.secret}", soft_wrap=True, highlight=False)
    else:
        console.print(
            "[yellow]auth OFF[/yellow] (SWEEP_AUTH=false): the API listens on 127.0.0.1 only"
        )
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
    client = Api(f"http://127.0.0.1:{port}", token=issued.secret if issued else None)
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
            f"Try: sweep best {name} -k 5   |   sweep plot {name} -o chart.png   |   "
            "Ctrl-C to stop."
        )
        while all(child.poll() is None for child in children):
            time.sleep(1)
        _fail("a child process exited; see .sweep/*.log")
    except KeyboardInterrupt:
        stop_children()
    finally:
        if issued is not None:
            with transaction(factory) as session:
                tokens.revoke_token(session, issued.info.id)


def _wait_ready(client: Api, children: list[Any]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if client.get_optional("/readyz") is not None:
            return
        if any(child.poll() is not None for child in children):
            _fail("the API or worker exited at start; see .sweep/api.log and .sweep/worker.log")
        time.sleep(0.3)
    _fail("the API did not become ready in 120 s; see .sweep/api.log")
