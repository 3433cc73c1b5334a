"""Bounded concurrency: no more requests at once than the database pool can serve."""

from __future__ import annotations

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import headers_for, status_for
from sweep.errors import ServerBusy

UNLIMITED_PATHS = ("/healthz",)  # liveness reads no database, and must answer under load


class RequestSlots:
    """Serves at most ``slots`` requests at once; one that waits ``wait_s`` for a slot gets 503.

    Each request holds one pooled connection at most, so with as many slots as
    the pool has connections a request never waits on the pool for long, and a
    burst beyond that is told to retry (``Retry-After``) instead of queuing for good.
    """

    def __init__(self, app: ASGIApp, slots: int, wait_s: float) -> None:
        self.app = app
        self.slots = slots
        self.wait_s = wait_s
        self._limiter: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.slots)
        limiter = self._limiter
        acquired = False
        with anyio.move_on_after(self.wait_s):
            await limiter.acquire()
            acquired = True
        if not acquired:
            busy = ServerBusy()
            response = JSONResponse(
                {"detail": busy.message}, status_code=status_for(busy), headers=headers_for(busy)
            )
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            limiter.release()
