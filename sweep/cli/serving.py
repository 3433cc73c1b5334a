"""Commands that start processes: the API, workers, the dashboard, and `sweep up` for all three."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from sweep.cli.app import LogFormatOpt, app, console, fail, settings_or_fail
from sweep.cli.client import Api, watch_sweep
from sweep.config import is_loopback
from sweep.logs import LogLevel, configure_logging


@app.command()
def api(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes (uvicorn workers), each with its own pool of "
            "SWEEP_DB_POOL_SIZE + SWEEP_DB_MAX_OVERFLOW connections",
        ),
    ] = 1,
    log_format: LogFormatOpt = "text",
) -> None:
    """Serve the REST API (OpenAPI docs at /docs, Prometheus metrics at /metrics)."""
    import uvicorn

    configure_logging(log_format)
    settings = settings_or_fail()
    if not settings.auth and not is_loopback(host):
        fail(
            f"refusing to serve on {host} with authentication off (SWEEP_AUTH=false): anyone "
            "on the network could queue work. Turn auth on (unset SWEEP_AUTH) and use "
            "`sweep token create`, or bind to 127.0.0.1."
        )
    logging.getLogger("sweep.api").info(
        "sweep API on http://%s:%d, %d process(es) serving %d requests at once each (store: %s)",
        host,
        port,
        workers,
        settings.max_requests,
        settings.safe_database_url,
    )
    if settings.auth:
        console.print("auth on: send `Authorization: Bearer <token>` (`sweep token create`)")
    else:
        console.print("[yellow]auth OFF[/yellow] (SWEEP_AUTH=false): serving on this machine only")
    if settings.session_secret is None:
        # One key for every uvicorn worker process, so a sign-in cookie works on all of them.
        os.environ["SWEEP_SESSION_SECRET"] = secrets.token_urlsafe(32)
    # log_config=None: uvicorn's own lines go through the handler set up above.
    # By import string: the core never imports the web layer (and uvicorn's workers need one).
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        log_config=None,
    )


# Over 60 lines because its signature is its options (Typer); the body is short.
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
    from sweep.errors import UnsupportedOptunaSchema
    from sweep.worker.loop import Worker
    from sweep.worker.supervisor import NoGpuError, Supervisor, visible_gpu_ids, worker_children

    configure_logging(log_format, log_level)
    settings = settings_or_fail()
    if gpus is None and workers == 1:
        if metrics_port is not None:
            from sweep.metrics import serve_worker_metrics

            serve_worker_metrics(metrics_port, metrics_host)
        worker_ = Worker(
            settings, device=device, exit_when_idle=exit_when_idle, threads=threads, batch=batch
        )
        try:
            code = worker_.run()
        except UnsupportedOptunaSchema as exc:
            fail(exc.message)
        raise typer.Exit(code)
    try:
        gpu_ids = visible_gpu_ids(gpus) if gpus is not None else None
    except (NoGpuError, ValueError) as exc:
        fail(str(exc))
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
    tunnel. To share it, open /dashboard/ on `sweep api` instead: the same dashboard
    behind the API's sign-in and roles.
    """
    from sqlalchemy.exc import OperationalError

    from sweep.errors import SchemaNotReady
    from sweep.store.engine import Pooling, make_engine
    from sweep.store.migrations import check_ready
    from sweep.store.optuna_storage import storage_for

    configure_logging()
    settings = settings_or_fail()
    engine = make_engine(settings.database_url, Pooling.of(settings))
    try:
        check_ready(engine)
    except SchemaNotReady as exc:
        fail(exc.message)
    except OperationalError as exc:
        fail(f"cannot reach the database {settings.safe_database_url}: {exc.orig}")
    finally:
        engine.dispose()
    import optuna_dashboard

    console.print(f"optuna-dashboard on http://{host}:{port} (store: {settings.safe_database_url})")
    console.print("it has no authentication: do not expose it beyond a trusted network")
    optuna_dashboard.run_server(storage_for(settings), host=host, port=port)


@app.command()
def up(
    n_trials: Annotated[int, typer.Option(help="trials of the default sweep")] = 30,
    epochs: Annotated[int, typer.Option(help="epochs per trial")] = 120,
    port: Annotated[int, typer.Option(help="API port on 127.0.0.1")] = 8000,
) -> None:
    """Migrate, start the API and a worker, run a default sweep, then keep serving until Ctrl-C."""
    from sweep.service import tokens
    from sweep.store.engine import Pooling, make_engine, make_session_factory, transaction
    from sweep.store.migrations import upgrade

    settings = settings_or_fail()
    engine = make_engine(settings.database_url, Pooling.of(settings))
    upgrade(engine)
    console.print(f"store: {settings.safe_database_url} (migrated)")
    factory = make_session_factory(engine)
    issued = None
    children: list[subprocess.Popen[bytes]] = []

    def on_sigterm(*_args: object) -> NoReturn:
        raise typer.Exit(0)  # the finally below stops the children

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
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
        _start_api_and_worker(port, children)
        client = Api(f"http://127.0.0.1:{port}", token=issued.secret if issued else None)
        _wait_ready(client, children)
        name = _queue_default_sweep(client, n_trials, epochs)
        watch_sweep(client, name)
        console.print(
            f"\nAPI serving at http://127.0.0.1:{port} "
            "(docs: /docs, Optuna dashboard: /dashboard/). "
            f"Try: sweep best {name} -k 5   |   sweep plot {name} -o chart.png   |   "
            "Ctrl-C to stop."
        )
        sign_in = " (sign in with the token above)" if issued else ""
        console.print(
            f"Sweep page: http://127.0.0.1:{port}/sweeps/{name}{sign_in}",
            soft_wrap=True,
            highlight=False,
        )
        while all(child.poll() is None for child in children):
            time.sleep(1)
        fail("a child process exited; see .sweep/*.log")
    except KeyboardInterrupt:
        pass  # Ctrl-C is how `sweep up` is meant to stop: exit 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
        if children:
            stop_children(children)
            console.print("stopped")
        if issued is not None:
            with transaction(factory) as session:
                tokens.revoke_token(session, issued.info.id)


def _start_api_and_worker(port: int, children: list[subprocess.Popen[bytes]]) -> None:
    """Start `sweep api` and `sweep worker`, appending each to ``children`` as it starts
    (so a failure to start the second still stops the first)."""
    logs = Path(".sweep")
    logs.mkdir(exist_ok=True)
    for name, args in (("api", ["api", "--port", str(port)]), ("worker", ["worker"])):
        with open(logs / f"{name}.log", "ab") as log_file:  # the child keeps its own copy
            command = [sys.executable, "-m", "sweep", *args]
            children.append(subprocess.Popen(command, stdout=log_file, stderr=log_file))
    console.print(f"started the API and one worker; logs in {logs}/api.log and {logs}/worker.log")


def _queue_default_sweep(client: Api, n_trials: int, epochs: int) -> str:
    """POST the default sweep (digits-mlp, the default space) and return its name."""
    from datetime import datetime

    name = "digits-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    body = {
        "name": name,
        "n_trials": n_trials,
        "epochs": epochs,
        "description": "the default sweep of `sweep up`",
    }
    client.request("POST", "/v1/sweeps", json=body)
    console.print(
        f"queued [bold]{name}[/bold]: {n_trials} trials of digits-mlp, "
        f"dropout in [0.2, 0.5], weight decay in [1e-5, 1e-2] (log)"
    )
    return name


def stop_children(children: list[subprocess.Popen[bytes]], grace: float = 60.0) -> None:
    """Terminate the children, give them ``grace`` seconds to finish, then kill the rest.

    A worker given SIGTERM releases its trial at the next epoch; a second Ctrl-C stops waiting.
    """
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    try:
        for child in children:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


def _wait_ready(client: Api, children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            fail("the API or worker exited at start; see .sweep/api.log and .sweep/worker.log")
        # A short timeout: whatever else holds the port may accept and never answer.
        if client.get_optional("/readyz", timeout=2) is not None:
            return
        time.sleep(0.3)
    fail("the API did not become ready in 120 s; see .sweep/api.log")
