"""Errors in the OpenAI shape, `{"error": {"message", "type", "param", "code"}}`, for every failure.

The official clients read this shape to raise their typed errors (`openai.BadRequestError` …), so a
malformed request gets a 4xx a client understands and the server goes on serving. Handlers cover our own
`APIError`, FastAPI's validation errors (malformed JSON, unknown fields, wrong types: 400 rather than
FastAPI's 422, as OpenAI answers), Starlette's HTTP errors (unknown route 404, wrong method 405) and
anything unexpected (500). `BodyLimit` refuses oversized bodies (413) before they are read whole.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# The OpenAI error `type` of each status we answer with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}


class APIError(HTTPException):
    """An error answered in the OpenAI shape. A Starlette `HTTPException`, so FastAPI's body reading passes it on."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.param, self.code = param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, **fields: Any) -> JSONResponse:
    """An error response (`fields`: param, code, headers)."""
    headers = fields.pop("headers", None)
    return JSONResponse(error_body(status, message, **fields), status_code=status, headers=headers)


def _validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    """One sentence and the offending parameter for the first problem FastAPI found in a request."""
    first = err.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    if first.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if first.get("type") == "missing":
        return f"Missing required parameter: {param}.", param
    return f"Invalid value for {param}: {first.get('msg', 'invalid')}.", param


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` in the OpenAI shape."""

    async def api_error(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, HTTPException)
        param, code = getattr(err, "param", None), getattr(err, "code", None)
        return error_response(err.status_code, str(err.detail), param=param, code=code, headers=err.headers)

    async def invalid(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        message, param = _validation_message(err)
        return error_response(400, message, param=param)

    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"The server failed on this request ({type(err).__name__}).")

    app.add_exception_handler(HTTPException, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)


class _BodyTooLarge(Exception):
    """Raised while reading a body that passed `BodyLimit`'s limit."""


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            too_large = error_response(413, f"The request body is larger than {self.limit} bytes.")
            await too_large(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise APIError(413, f"The request body is larger than {self.limit} bytes.")
            return message

        await self.app(scope, counted, send)
