"""Commands that use the database directly: the schema (`sweep db`), API tokens (`sweep token`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sweep.cli.app import JsonOpt, app, console, err_console, fail, settings_or_fail

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Engine

    from sweep.service.tokens import TokenInfo

db_app = typer.Typer(
    help="The database schema (service tables and Optuna's).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
token_app = typer.Typer(
    help="API tokens (talks to the database directly, like `sweep db`).", no_args_is_help=True
)
app.add_typer(token_app, name="token")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the service's tables and Optuna's schema."""
    from sweep.errors import UnsupportedOptunaSchema
    from sweep.store.engine import Pooling, make_engine
    from sweep.store.migrations import current_revision, upgrade

    settings = settings_or_fail()
    engine = make_engine(settings.database_url, Pooling.of(settings))
    try:
        upgrade(engine)
    except UnsupportedOptunaSchema as exc:
        fail(exc.message)
    console.print(f"database {settings.safe_database_url} at revision {current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "base") -> None:
    """Migrate the service's tables down to REVISION (Optuna's tables are kept)."""
    from sweep.store.migrations import downgrade

    downgrade(_engine(), revision)
    console.print(f"service tables at {revision}")


def _engine() -> Engine:
    from sweep.store.engine import Pooling, make_engine

    settings = settings_or_fail()
    return make_engine(settings.database_url, Pooling.of(settings))


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
    from sweep.errors import SweepError
    from sweep.service import tokens
    from sweep.store.engine import Pooling, make_engine, make_session_factory, transaction

    settings = settings_or_fail()
    engine = make_engine(settings.database_url, Pooling.of(settings))
    try:
        lifetime = tokens.parse_duration(expires) if expires else None
        with transaction(make_session_factory(engine)) as session:
            issued = tokens.create_token(session, role, name=name, expires_in=lifetime)
    except SweepError as exc:
        fail(exc.message)
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
    from sweep.service import tokens
    from sweep.store.engine import make_session_factory, transaction

    with transaction(make_session_factory(_engine())) as session:
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
    from sweep.errors import SweepError
    from sweep.service import tokens
    from sweep.store.engine import make_session_factory, transaction

    try:
        factory = make_session_factory(_engine())
        with transaction(factory) as session:
            info = tokens.revoke_token(session, token_id)
    except SweepError as exc:
        fail(exc.message)
    console.print(f"token {info.id} ({info.role}) revoked")


def _token_row(info: TokenInfo) -> dict[str, Any]:
    from sweep.store.tables import utcnow

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
