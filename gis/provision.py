"""Bring a database to life: the own cluster started, the database created, migrations applied."""

from __future__ import annotations

from psycopg import sql

from gis import migrate
from gis.cluster import cluster_for
from gis.db import conninfo, open_connection
from gis.settings import Settings


def start_server(settings: Settings) -> None:
    """Start the self-managed cluster; with CITYOPS_DATABASE_URL there is nothing to start."""
    if settings.uses_own_cluster:
        cluster_for(settings).start()


def create_database(settings: Settings, name: str) -> str:
    """Create `name` on the server if missing (own cluster or the configured one); returns its conninfo."""
    with open_connection(conninfo(settings, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return conninfo(settings, name)


def drop_database(settings: Settings, name: str) -> None:
    with open_connection(conninfo(settings, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def prepare(settings: Settings) -> str:
    """Everything `cityops up` needs before serving: server, database, schema. Returns the conninfo."""
    start_server(settings)
    info = create_database(settings, settings.database_name) if settings.uses_own_cluster else conninfo(settings)
    migrate.upgrade(info)
    return info
