"""Commands that talk to the API over HTTP: submit, enqueue, ls, show, best, plot, importance,
watch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from sweep.cli.app import ApiOpt, JsonOpt, app, console, fail, settings_or_fail
from sweep.definition.status import SweepStatus

# a sweep in one of these is over: `watch` stops
TERMINAL = (SweepStatus.COMPLETED, SweepStatus.CANCELLED, SweepStatus.FAILED)


class Api:
    """A small client of the sweep API for the CLI commands."""

    def __init__(self, base_url: str | None, token: str | None = None) -> None:
        settings = settings_or_fail()
        self.base_url = (base_url or settings.api_url).rstrip("/")
        token = token or (settings.token.get_secret_value() if settings.token else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=30, headers=headers)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the API at {self.base_url} ({exc}); is `sweep api` running?")
        if response.status_code == 401:
            fail(f"401: {_error_text(response)} (the CLI sends the token in SWEEP_TOKEN)")
        if response.status_code >= 400:
            fail(f"{response.status_code}: {_error_text(response)}")
        return response.json()

    def get_bytes(self, path: str) -> bytes:
        """GET a binary body (a chart), failing with the API's message on an error."""
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the API at {self.base_url} ({exc}); is `sweep api` running?")
        if response.status_code >= 400:
            fail(f"{response.status_code}: {_error_text(response)}")
        return response.content

    def get_optional(self, path: str, timeout: float | None = None) -> Any | None:
        """GET that answers None on 404 (e.g. no best trial yet) or when the API is not answering.

        ``timeout`` (seconds) replaces the client's 30 s for this request.
        """
        try:
            response = self._client.get(path, timeout=timeout or self._client.timeout)
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
    priority: Annotated[
        int | None, typer.Option(help="workers serve the highest first [default: 0]")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="most trials running at once [default: no cap]")
    ] = None,
    warm_start_from: Annotated[
        str | None,
        typer.Option(help="start from this sweep's finished trials (same task, space, epochs)"),
    ] = None,
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
        "priority": priority,
        "max_concurrent": max_concurrent,
        "warm_start_from": warm_start_from,
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
    if created.get("copied_trials"):
        console.print(f"started from {created['copied_trials']} trials of {warm_start_from}")


def _param(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give NAME=NUMBER, e.g. dropout=0.3") from None


@app.command()
def enqueue(
    name: str,
    param: Annotated[
        list[str], typer.Option(help="NAME=VALUE, once per parameter, e.g. dropout=0.3")
    ],
    api_url: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a configuration for the sweep to try next; it takes one trial of the budget."""
    params = dict(_param(p) for p in param)
    trial = Api(api_url).request("POST", f"/v1/sweeps/{name}/trials", json={"params": params})
    if as_json:
        console.print_json(data=trial)
        return
    shown = ", ".join(f"{k}={v:g}" for k, v in trial["params"].items())
    console.print(f"queued trial {trial['number']} of [bold]{name}[/bold]: {shown}")


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
    table = Table("name", "status", "task", "done / budget", "running / cap", "priority", "created")
    for s in page["items"]:
        table.add_row(
            s["name"],
            s["status"],
            s["task"],
            f"{_done(s)} / {s['n_trials']}",
            f"{s['trials'].get('RUNNING', 0)} / {_cap(s)}",
            str(s.get("priority", 0)),
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
    table.add_row("priority", str(s.get("priority", 0)))
    table.add_row("max_concurrent", _cap(s))
    table.add_row("done", f"{_done(s)} / {s['n_trials']}")
    table.add_row("trials", ", ".join(f"{k}={v}" for k, v in sorted(s["trials"].items())) or "-")
    if s["error"]:
        table.add_row("error", s["error"])
    console.print(table)


def _cap(s: dict[str, Any]) -> str:
    cap = s.get("max_concurrent")
    return "no cap" if cap is None else str(cap)


@app.command()
def best(
    name: str,
    k: Annotated[int, typer.Option("-k", help="how many configurations")] = 1,
    api_url: ApiOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the best configuration(s) found so far, and whether the best is told apart.

    With -k 1 (the default) the JSON is /best's: with the runner-up, the
    p-values and ``decided``.
    """
    client = Api(api_url)
    if k == 1:
        found = client.request("GET", f"/v1/sweeps/{name}/best")
        if as_json:
            console.print_json(data=found)
            return
        console.print(_trials_table([found]))
        for line in verdict_lines(found):
            console.print(line)
        return
    rows = client.request("GET", f"/v1/sweeps/{name}/top", params={"k": k})
    if not rows:
        fail(f"no trial of sweep {name!r} has completed yet")
    if as_json:
        console.print_json(data=rows)
        return
    console.print(_trials_table(rows))


def _interval(ci95: list[float] | None) -> str:
    return f"[{ci95[0]:.4f}, {ci95[1]:.4f}]" if ci95 else "-"


def verdict_lines(best: dict[str, Any]) -> list[str]:
    """What /best says about how sure it is: against the runner-up, then the baseline."""
    lines = []
    second = best.get("runner_up")
    p = best.get("p_value")
    if second is not None:
        against = f"trial {second['number']} (fresh mean "
        against += "-" if second["fresh_mean"] is None else f"{second['fresh_mean']:.4f}"
        against += f", 95% CI {_interval(second['ci95'])})"
        if best.get("decided"):
            lines.append(f"decided: trial {best['number']} beats {against}, p = {p:.3g}")
        elif p is None:
            lines.append(
                f"indistinguishable from {against}: too few fresh seeds to test (need 2 each)"
            )
        else:
            lines.append(f"indistinguishable from {against}: p = {p:.3g} ≥ 0.05")
    baseline = best.get("baseline")
    if baseline and baseline.get("fresh_mean") is not None:
        p_base = best.get("baseline_p_value")
        test = f", paired p = {p_base:.3g}" if p_base is not None else ""
        lines.append(
            f"unregularized baseline (p=0, λ=0) over {baseline['fresh_seeds']} seed(s): "
            f"val loss {baseline['fresh_mean']:.4f}, 95% CI {_interval(baseline['ci95'])}{test}"
        )
    return lines


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
    table = Table(
        "trial",
        *params,
        "val loss (selection run)",
        "fresh mean ± std (seeds)",
        "95% CI",
        "epoch",
        "val acc",
        "gap",
    )
    for r in rows:
        m = r["metrics"]
        fresh = "-"
        if r.get("fresh_mean") is not None:
            spread = f" ± {r['fresh_std']:.4f}" if r.get("fresh_std") is not None else ""
            fresh = f"{r['fresh_mean']:.4f}{spread} ({r['fresh_seeds']})"
        table.add_row(
            str(r["number"]),
            *(f"{r['params'][p]:.4g}" for p in params),
            f"{r['value']:.4f}",
            fresh,
            _interval(r.get("ci95")),
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
        fail(f"sweep {name} was cancelled")


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
        fail(f"sweep {name} failed: {s['error']}")
    if top:
        console.print(_trials_table([top]))
        for line in verdict_lines(top):
            console.print(line)
    return dict(s)


# ---- the newcomer's one command ------------------------------------------------------------
