"""Settings read from the environment (prefix ``SWEEP_``); callers build them, never import time."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    """Configuration shared by the API, the workers and the CLI."""

    model_config = SettingsConfigDict(env_prefix="SWEEP_", extra="ignore")

    database_url: str = Field(
        "sqlite:///sweep.db",
        repr=False,  # may hold a password; print safe_database_url instead
        description="SQLAlchemy URL of the store: sqlite:///file.db or postgresql+psycopg://…",
    )
    heartbeat_interval: int = Field(5, ge=1, description="seconds between a worker's heartbeats")
    grace_period: int = Field(
        20, ge=3, description="seconds without a heartbeat before a running trial is stale"
    )
    flush_interval: float = Field(
        0.5,
        gt=0,
        description="seconds a worker gathers its trials' epochs before writing them together; "
        "the dashboard's curves and other workers' pruning lag by at most this",
    )
    reap_interval: float = Field(
        10.0, gt=0, description="seconds between the API's sweeps for stale trials"
    )
    poll_interval: float = Field(
        1.0, gt=0, description="seconds an idle worker first waits before asking for work again"
    )
    max_poll_interval: float = Field(
        30.0,
        gt=0,
        description="longest wait of an idle worker: the wait doubles (with jitter) up to this",
    )
    transaction_pooler: bool = Field(
        False,
        description="the database URL is a transaction pooler (PgBouncer pool_mode=transaction): "
        "no client-side pool, no prepared statements",
    )
    api_url: str = Field("http://127.0.0.1:8000", description="where the CLI finds the API")
    metrics: bool = Field(True, description="serve Prometheus metrics at the API's /metrics")
    token: SecretStr | None = Field(None, description="the bearer token the CLI sends to the API")
    auth: bool = Field(True, description="require a bearer token on every /v1 route")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="browser origins allowed to call the API, comma-separated; none: CORS off",
    )
    rate_limit: str = Field(
        "120/minute",
        description="mutating requests allowed per token, e.g. 120/minute; 'off' for no limit",
    )
    db_pool_size: int = Field(
        5, ge=1, description="connections each API or worker process keeps open to PostgreSQL"
    )
    db_max_overflow: int = Field(
        5, ge=0, description="connections a process may open beyond db_pool_size when busy"
    )
    db_pool_timeout: float = Field(
        1.0, gt=0, description="seconds a query waits for a free connection before a 503"
    )
    queue_timeout: float = Field(
        1.0,
        gt=0,
        description="seconds a request waits for one of the API's db_pool_size + db_max_overflow "
        "request slots before it is answered 503 with Retry-After",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="largest request body accepted")
    session_secret: SecretStr | None = Field(
        None,
        description="key that signs browser sign-in cookies; unset: a random one per `sweep api` "
        "start (signing everyone out on restart)",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        if value.strip().lower() not in ("off", ""):
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    f"SWEEP_RATE_LIMIT {value!r} is not a rate such as 120/minute or 5/second"
                ) from None
        return value.strip()

    @model_validator(mode="after")
    def _grace_outlasts_heartbeat(self) -> Settings:
        # SQLite's now() has 1 s resolution, so a lease needs interval + 2 s of slack.
        if self.grace_period < self.heartbeat_interval + 2:
            raise ValueError(
                f"SWEEP_GRACE_PERIOD ({self.grace_period}) must be at least "
                f"SWEEP_HEARTBEAT_INTERVAL + 2 ({self.heartbeat_interval + 2})"
            )
        return self

    @property
    def max_requests(self) -> int:
        """Requests the API serves at once: one pooled connection each, never more."""
        return self.db_pool_size + self.db_max_overflow

    @property
    def safe_database_url(self) -> str:
        """The database URL with any password masked, for printing."""
        return make_url(self.database_url).render_as_string(hide_password=True)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False
