"""Request dependencies: settings, the session that owns the request's transaction, storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from optuna.storages import RDBStorage
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sweep.config import Settings
from sweep.db import transaction
from sweep.study import storage_for


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_storage(request: Request) -> RDBStorage:
    """Optuna's storage, opened on first use (the database may be down when the API starts)."""
    return storage_for(request.app.state.settings)


def get_session(request: Request) -> Iterator[Session]:
    """A session committed when the endpoint returns, before the response is sent."""
    with transaction(request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StorageDep = Annotated[RDBStorage, Depends(get_storage)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
