"""A cap on every request body, enforced before any route (or authentication) reads it.

FastAPI parses a JSON body before it runs the dependencies that authenticate the caller, so
without this an anonymous client could make a worker buffer gigabytes.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etrust.problems import problem


class BodyLimitMiddleware:
    """``limit`` for every path, except the larger ``uploads`` limits of the paths that take
    documents (a sealed multi-page license is more than a JSON request)."""

    def __init__(self, app: ASGIApp, limit: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get(scope.get("path", ""), self.default)
        await _Limited(self.app, limit)(scope, receive, send)


class _Limited:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = problem(
                    413,
                    "INPUT_TOO_LARGE",
                    "input too large",
                    f"request bodies are limited to {self.limit} bytes",
                    "上传数据过大",
                )
                await response(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised inside the route's body read; FastAPI re-raises HTTPException as is.
                    raise HTTPException(413, f"request bodies are limited to {self.limit} bytes")
            return message

        await self.app(scope, limited, send)
