"""One place that turns domain exceptions into HTTP answers with a reason (OGC exception JSON)."""

from __future__ import annotations

import logging
from http import HTTPStatus

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from titiler.core.errors import DEFAULT_STATUS_CODES as TILER_STATUS

from gis.errors import (CityOpsError, Conflict, DatabaseUnavailable, Forbidden, InvalidInput, NotFound,
                        PreconditionFailed, PreconditionRequired, ServiceUnavailable, Unauthorized)

log = logging.getLogger("cityops.api")

STATUS = {
    NotFound: 404,
    InvalidInput: 400,
    Conflict: 409,
    PreconditionFailed: 412,
    PreconditionRequired: 428,
    Unauthorized: 401,
    Forbidden: 403,
    DatabaseUnavailable: 503,
    ServiceUnavailable: 503,
}


def problem(status: int, code: str, description: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "description": description}, status_code=status, headers=headers)


def _status_of(exc: CityOpsError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body", "header"))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(CityOpsError)
    async def domain_error(_request: Request, exc: CityOpsError):
        status = _status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem(status, type(exc).__name__, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError):
        return problem(400, "InvalidParameterValue", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        code = HTTPStatus(exc.status_code).phrase.replace(" ", "") if exc.status_code in HTTPStatus._value2member_map_ else "HTTPError"
        return problem(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    async def tiler_error(_request: Request, exc: Exception):
        return problem(TILER_STATUS[type(exc)], type(exc).__name__, str(exc))

    for kind, status in TILER_STATUS.items():  # rio-tiler's client errors (tile outside bounds, bad band, ...)
        if status < 500:
            app.add_exception_handler(kind, tiler_error)

    @app.exception_handler(psycopg.errors.IntegrityError)
    async def integrity_error(_request: Request, exc: psycopg.errors.IntegrityError):
        constraint = getattr(exc.diag, "constraint_name", None) or "a database constraint"
        return problem(409 if isinstance(exc, psycopg.errors.UniqueViolation) else 400,
                       "ConstraintViolation", f"rejected by {constraint}; nothing was written")

    @app.exception_handler(psycopg.errors.DataError)
    async def invalid_value(_request: Request, exc: psycopg.errors.DataError):
        # e.g. 'invalid input syntax for type date: "x"': the value's fault, and the message has no SQL
        return problem(400, "InvalidValue", f"{exc.diag.message_primary or 'invalid value'}; nothing was written")

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(_request: Request, exc: psycopg.OperationalError):
        log.error("database unavailable: %s", exc)
        return problem(503, "DatabaseUnavailable", "the database is unavailable; try again shortly")

    @app.exception_handler(psycopg.Error)
    async def database_error(_request: Request, exc: psycopg.Error):
        # SQL text never reaches the client; it goes to the server log.
        log.exception("database error", exc_info=exc)
        return problem(500, "InternalError", "the server could not complete the request")
