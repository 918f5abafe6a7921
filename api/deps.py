"""FastAPI dependencies: settings, database connections, and the caller's access key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import psycopg
from fastapi import Depends, Header, Request
from psycopg_pool import AsyncConnectionPool

from gis.keys import AUTHENTICATE_SQL, Principal, Role, parse_bearer, principal_from_row
from gis.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool


async def get_connection(pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> AsyncIterator[psycopg.AsyncConnection]:
    async with pool.connection() as conn:
        yield conn


Connection = Annotated[psycopg.AsyncConnection, Depends(get_connection)]


async def get_principal(
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    digest = parse_bearer(authorization)
    async with pool.connection() as conn:
        row = await (await conn.execute(AUTHENTICATE_SQL, [digest])).fetchone()
    return principal_from_row(row)


def require(role: Role):
    """A dependency that admits only keys whose role grants `role` (401 without a key, 403 without the role)."""

    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(role)
        return principal

    return dependency
