"""The ``sweep`` Typer app and what every command family shares: options, errors, settings."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from sweep.config import Settings
from sweep.logs import LogFormat


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

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

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


def fail(message: str) -> NoReturn:
    if SweepApp.debug and sys.exc_info()[1] is not None:
        traceback.print_exc()
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def settings_or_fail() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: show the rule, not a traceback
        fail(f"bad configuration: {exc}")
