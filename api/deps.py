"""FastAPI dependencies: settings, the request's one database connection, the caller's access key,
and the collection a path names.

One pool connection per request: FastAPI caches a dependency per request, so every dependency
and the route that ask for `Connection` share one connection, and the key is looked up on it. A
route that held a connection and asked for a second (the key check, a stream) deadlocked the pool
once as many requests as the pool has connections were each waiting for their second.

A route that needs a key declares it with `require(...)`; the rule it carries (`KeyRule`) is also
checked from the headers alone before the body is received (`api.key_gate`), so nobody without
the right key gets a large body read.

No `from __future__ import annotations`: `require` builds dependencies whose parameter types are
local objects that FastAPI must see as such.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Header, Path, Request

from gis.errors import NotFound, ServiceUnavailable
from gis.keys import Principal, Role, authenticate, parse_credentials, require_any
from gis.limits import LimitSettings
from gis.settings import Settings, settings_of
from layers.catalogue import Layer
from layers.live import LiveCatalogue


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    # Released after the response is sent, so a streamed body reads through this same connection.
    # Through the primary's gate: while the primary is down, a fast 503 with the reason (gis.replication).
    async with request.app.state.primary.connection() as conn:
        yield conn


def get_sync_connection(request: Request) -> Iterator[psycopg.Connection]:
    """A connection of the synchronous pool, for routes (run in the threadpool) over the synchronous
    drone functions that the CLI calls too."""
    with request.app.state.sync_pool.connection() as conn:
        yield conn


async def get_read_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """The request's one connection for read-only routes (Features pages, planners' queries): from the
    read replica when one is configured and has replayed every change this server was told of, else
    from the primary (gis.replication)."""
    async with request.app.state.reads.connection() as conn:
        yield conn


async def analysis_turn(request: Request) -> AsyncIterator[None]:
    """A turn among the few analyses a process runs at once, taken BEFORE the request's connection (a
    route-level dependency): forty planners asking for coverage gaps held every pooled connection for
    seconds each, and sensor readings and page reads got 503s meanwhile."""
    turns: asyncio.Semaphore = request.app.state.analysis_turns
    limits = settings_of(LimitSettings)
    try:
        await asyncio.wait_for(turns.acquire(), limits.pool_timeout_s)
    except TimeoutError:
        raise ServiceUnavailable(f"{limits.analysis_max_concurrent} analyses are running in this process "
                                 f"(CITYOPS_ANALYSIS_MAX_CONCURRENT); try again shortly") from None
    try:
        yield
    finally:
        turns.release()


AnalysisTurn = Depends(analysis_turn)
Connection = Annotated[psycopg.AsyncConnection, Depends(get_connection)]
ReadConnection = Annotated[psycopg.AsyncConnection, Depends(get_read_connection)]
SyncConnection = Annotated[psycopg.Connection, Depends(get_sync_connection)]


@dataclass(frozen=True)
class KeyRule:
    """What a route asks of its caller's key: a role granting one of `roles`; `basic`: the key may
    come as the password of HTTP Basic (SensorThings clients send it so)."""

    roles: tuple[Role, ...]
    basic: bool = False

    def digest(self, authorization: str | None) -> bytes:
        return parse_credentials(authorization, basic=self.basic)

    def admit(self, principal: Principal) -> None:
        require_any(principal, self.roles)


def require(*roles: Role, connection: Any = get_connection, basic: bool = False):
    """A dependency that admits only keys whose role grants one of `roles` (401 without a key, 403
    without the role), looked up on the request's own connection (`get_connection`, or
    `get_sync_connection` for routes over the synchronous pool)."""
    rule = KeyRule(roles, basic)

    async def dependency(conn: Annotated[Any, Depends(connection)],
                         authorization: Annotated[str | None, Header()] = None) -> Principal:
        principal = await authenticate(conn, rule.digest(authorization))
        rule.admit(principal)
        return principal

    dependency.key_rule = rule  # read by api.key_gate
    return dependency


def optional_key(*, connection: Any = get_connection):
    """A dependency giving the caller's key when it sent one (a bad key is still a 401), else None:
    for public reads that show more to key holders. Looked up on the request's own connection."""

    async def dependency(conn: Annotated[Any, Depends(connection)],
                         authorization: Annotated[str | None, Header()] = None) -> Principal | None:
        return None if authorization is None else await authenticate(conn, parse_credentials(authorization))

    return dependency


def get_catalogue(request: Request) -> LiveCatalogue:
    return request.app.state.catalogue


def get_collection(catalogue: Annotated[LiveCatalogue, Depends(get_catalogue)],
                   collectionId: Annotated[str, Path(description="a collection of /collections")]) -> Layer:  # noqa: N803 - OGC's name
    """The layer a path's `{collectionId}` names in the live catalogue (404 naming the known ones)."""
    return catalogue.get(collectionId)


Collection = Annotated[Layer, Depends(get_collection)]


async def get_any_collection(request: Request, conn: Connection,
                             catalogue: Annotated[LiveCatalogue, Depends(get_catalogue)],
                             collectionId: Annotated[str, Path(description="a collection of /collections")]  # noqa: N803
                             ) -> Layer | dict:
    """What `GET /collections/{collectionId}` shows: a layer of the live catalogue, else the document an
    extension serving another kind of collection (the raster imagery) gives for the id; else the
    catalogue's 404 naming the known layers. One route for every kind, so no route order matters."""
    try:
        return catalogue.get(collectionId)
    except NotFound:
        for resolve in request.app.state.collection_resolvers:
            document = await resolve(request, conn, collectionId)
            if document is not None:
                return document
        raise


AnyCollection = Annotated[Layer | dict, Depends(get_any_collection)]
