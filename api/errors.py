"""One place that turns domain exceptions into HTTP answers with a reason (OGC exception JSON)."""

from __future__ import annotations

import logging
from http import HTTPStatus

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from titiler.core.errors import DEFAULT_STATUS_CODES as TILER_STATUS

from gis.errors import (CityOpsError, Conflict, DatabaseUnavailable, Forbidden, InvalidInput, NotFound,
                        PreconditionFailed, PreconditionRequired, ServiceUnavailable, Unauthorized)
from gis.limits import LimitSettings
from gis.settings import settings_of

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


def operational_problem(exc: psycopg.OperationalError) -> JSONResponse:
    """psycopg files very different things under OperationalError: only a lost or refused connection
    is an outage; a full pool or a cancelled statement is overload (fast 503 + Retry-After); a
    statement over one of PostgreSQL's program limits is the request's fault (400)."""
    retry = {"Retry-After": str(settings_of(LimitSettings).retry_after_s)}
    state = exc.sqlstate or ""
    if isinstance(exc, PoolTimeout):
        log.warning("pool exhausted: %s", exc)
        return problem(503, "ServerBusy", "every database connection is busy; try again shortly", retry)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return problem(503, "QueryTimeout", f"the query ran longer than {settings_of(LimitSettings).statement_timeout_s:g} s and "
                       "was cancelled; narrow it (bbox, filter, limit) or try again later", retry)
    if state.startswith("54"):
        return problem(400, "RequestTooComplex", f"the request is beyond a database limit: {exc.diag.message_primary}")
    if state.startswith("53"):
        log.error("database out of resources: %s", exc)
        return problem(503, "ServerBusy", "the database is out of resources; try again shortly", retry)
    if state and not state.startswith(("08", "57P")):
        log.exception("database error", exc_info=exc)
        return problem(500, "InternalError", "the server could not complete the request")
    log.error("database unavailable: %s", exc)
    return problem(503, "DatabaseUnavailable", "the database is unavailable; try again shortly", retry)


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


def domain_problem(exc: CityOpsError, headers: dict | None = None) -> JSONResponse:
    status = _status_of(exc)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = str(settings_of(LimitSettings).retry_after_s)
    return problem(status, type(exc).__name__, str(exc), headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(CityOpsError)
    async def domain_error(_request: Request, exc: CityOpsError):
        return domain_problem(exc)

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
        if isinstance(exc, psycopg.errors.NotNullViolation) and exc.diag.column_name:
            # a NOT NULL column has no constraint name: name the missing field instead
            return problem(400, "ConstraintViolation", f"'{exc.diag.column_name}' is required; nothing was written")
        constraint = getattr(exc.diag, "constraint_name", None) or "a database constraint"
        return problem(409 if isinstance(exc, psycopg.errors.UniqueViolation) else 400,
                       "ConstraintViolation", f"rejected by {constraint}; nothing was written")

    @app.exception_handler(psycopg.errors.DataError)
    async def invalid_value(request: Request, exc: psycopg.errors.DataError):
        # e.g. 'invalid input syntax for type date: "x"': the value's fault, and the message has no SQL;
        # psycopg's own refusals (a NUL byte in text) carry no diagnostics, only their message
        reason = exc.diag.message_primary or (str(exc) if exc.sqlstate is None else "") or "invalid value"
        return problem(400, "InvalidValue", reason if request.method in ("GET", "HEAD") else f"{reason}; nothing was written")

    @app.exception_handler(psycopg.OperationalError)
    async def database_operational(request: Request, exc: psycopg.OperationalError):
        state = exc.sqlstate or ""
        if not state or state.startswith(("08", "57P")):
            request.app.state.primary.suspect()  # a lost connection: the next request checks the primary first
        return operational_problem(exc)

    @app.exception_handler(psycopg.Error)
    async def database_error(_request: Request, exc: psycopg.Error):
        # SQL text never reaches the client; it goes to the server log.
        log.exception("database error", exc_info=exc)
        return problem(500, "InternalError", "the server could not complete the request")
