"""RFC 9457 problem+json for the HTTP API: one mapping from the exception tree to responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trust.errors import EtrustError

log = logging.getLogger("etrust.http")

PROBLEM_TYPE = "https://etrust.invalid/problems/"


def problem(
    status: int, code: str, title: str, detail: str, title_zh: str | None = None
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE + code.lower(),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if title_zh:
        body["title_zh"] = title_zh
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(EtrustError)
    async def _domain(_: Request, exc: EtrustError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("server-side error %s: %s", exc.code, exc.message)
        return problem(
            exc.http_status,
            exc.code,
            exc.code.replace("_", " ").lower(),
            exc.message,
            exc.message_zh,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return problem(422, "REQUEST_INVALID", "request invalid", detail, "请求参数有误")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "INPUT_TOO_LARGE"}.get(
            exc.status_code, "HTTP_ERROR"
        )
        return problem(exc.status_code, code, code.replace("_", " ").lower(), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return problem(
            500,
            "INTERNAL",
            "internal error",
            "the server could not complete the request",
            "服务器内部错误",
        )
