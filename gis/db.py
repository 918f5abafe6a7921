"""Connections to the city database: conninfo, a checked sync connection, the async pool."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gis.cluster import cluster_for
from gis.errors import DatabaseUnavailable
from gis.limits import LimitSettings
from gis.settings import Settings, settings_of

CONNECT_TIMEOUT_S = 10


def conninfo(settings: Settings, dbname: str | None = None) -> str:
    """libpq conninfo of the configured database (or of another database on the same server)."""
    if settings.database_url:
        if dbname is None:
            return settings.database_url
        return psycopg.conninfo.make_conninfo(settings.database_url, dbname=dbname)
    return cluster_for(settings).conninfo(dbname or settings.database_name)


def describe(info: str) -> str:
    """The conninfo without its password, fit for a message."""
    params = psycopg.conninfo.conninfo_to_dict(info)
    params.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in params.items())


def open_connection(info: str, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        # No server-side prepared statements: these connections (CLI, imports, job workers) run few repeated
        # statements, and they may go through a transaction-mode pgbouncer, which cannot carry them.
        return psycopg.connect(info, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row,
                               prepare_threshold=None)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to the database ({describe(info)}): {reason}") from exc
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnavailable(f"invalid database URL: {exc}") from exc


@contextmanager
def connect(settings: Settings, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    with open_connection(conninfo(settings), autocommit=autocommit) as conn:
        yield conn


def require_postgis(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
    if row is None:
        raise DatabaseUnavailable(
            "the PostGIS extension is not installed in this database: run "
            "'CREATE EXTENSION postgis' as a superuser (or `cityops db migrate`, which tries)"
        )
    return row["extversion"]


def create_pool(settings: Settings, info: str | None = None) -> AsyncConnectionPool:
    """The API's pool; opened in the app's lifespan. Rows come back as dicts.

    A request waits at most `pool_timeout_s` for a connection and a statement runs at most
    `statement_timeout_s` (enforced by the server, so it also stops work the client gave up on):
    overload is a fast 503, never a hang."""
    limits = settings_of(LimitSettings)
    return AsyncConnectionPool(
        info or conninfo(settings),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=limits.pool_timeout_s,
        kwargs=connection_options(settings),
        open=False,
    )


def connection_options(settings: Settings) -> dict:
    """What every pooled connection of the app is opened with (rows as dicts, autocommit; no server-side
    prepared statements behind a transaction-mode pgbouncer)."""
    statement_timeout_ms = int(settings_of(LimitSettings).statement_timeout_s * 1000)
    options = {"row_factory": dict_row, "autocommit": True, "options": f"-c statement_timeout={statement_timeout_ms}"}
    if settings.pgbouncer:
        options["prepare_threshold"] = None
    return options


def create_read_pool(settings: Settings) -> AsyncConnectionPool | None:
    """A pool on the read replica when one is configured (CITYOPS_READ_DATABASE_URL), else None.
    It starts empty and is not waited for, so a replica that is down delays nothing at start-up."""
    if not settings.read_database_url:
        return None
    return AsyncConnectionPool(
        settings.read_database_url,
        min_size=0,
        max_size=settings.pool_max_size,
        kwargs={**connection_options(settings), "connect_timeout": 2},
        open=False,
    )
