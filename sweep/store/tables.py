"""The tables the service owns. Optuna's own tables live beside them in the same database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sweep.definition.status import SweepStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    """A request to tune dropout and weight decay; owns the Optuna study of the same name."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    task: Mapped[str] = mapped_column(String(100))
    task_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_trials: Mapped[int] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer)
    space: Mapped[dict[str, Any]] = mapped_column(JSON)
    sampler: Mapped[str] = mapped_column(String(32))
    pruner: Mapped[str] = mapped_column(String(32))
    penalty: Mapped[str] = mapped_column(String(16))
    patience: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    # {"sampler": {...}, "pruner": {...}}: the options of the named sampler and pruner
    search_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Evaluation trials, run after the budget in the sibling study "<name>.eval".
    baseline: Mapped[bool] = mapped_column(Boolean, default=True)
    reevaluate_top: Mapped[int] = mapped_column(Integer, default=3)
    reevaluate_seeds: Mapped[int] = mapped_column(Integer, default=3)
    race: Mapped[bool] = mapped_column(Boolean, default=True)
    race_seeds: Mapped[int] = mapped_column(Integer, default=10)
    test_split: Mapped[bool] = mapped_column(Boolean, default=False)
    # How workers share themselves out (sweep.store.work): highest priority first, then
    # fair share across the tokens that created the sweeps, never over max_concurrent.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    max_concurrent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)  # an api_tokens id
    status: Mapped[str] = mapped_column(String(16), index=True, default=SweepStatus.QUEUED)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def sampler_options(self) -> dict[str, Any]:
        return dict(self.search_options.get("sampler", {}))

    @property
    def pruner_options(self) -> dict[str, Any]:
        return dict(self.search_options.get("pruner", {}))


TOKEN_ROLES = ("reader", "user", "admin")


class ApiToken(Base):
    """A bearer token of the API. Only the SHA-256 of the secret is stored, never the secret."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
