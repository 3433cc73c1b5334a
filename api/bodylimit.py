"""The request body limit: a JSON 413 whether the body declares its length or is chunked."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Refuses a request body over ``max_bytes``, with the same answer as every other error.

    Starlette's own limit (FastAPI's ``max_body_size``) answers a too-large ``Content-Length``
    in plain text, replacing whatever the app's error handlers said.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = f"Content Too Large: the request body is over the limit of {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:  # refused before reading it
            response = JSONResponse({"detail": self.message}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # answered by the app's HTTPException handler
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, receive_within_limit, send)
