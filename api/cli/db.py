"""`cityops db …`: the database server and its schema."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import date

import psycopg
import typer
from psycopg.rows import dict_row

from api.cli.common import console, fail, run_guarded
from gis import migrate, provision
from gis.cluster import cluster_for
from gis.db import conninfo, describe, open_connection, require_postgis
from gis.settings import get_settings
from ops import partitions

app = typer.Typer(help="Start, stop and migrate the database.", no_args_is_help=True)


@app.command()
def start() -> None:
    """Start the self-managed PostGIS cluster (creating it on first use)."""
    def action() -> None:
        settings = get_settings()
        if not settings.uses_own_cluster:
            fail("CITYOPS_DATABASE_URL is set: that server is managed elsewhere, not by cityops")
        cluster = cluster_for(settings)
        provision.start_server(settings)
        provision.create_database(settings, settings.database_name)
        console.print(f"PostGIS running, socket in {cluster.socket_dir}; data in {cluster.data_dir}")
    run_guarded(action)


@app.command()
def stop() -> None:
    """Stop the self-managed cluster."""
    def action() -> None:
        settings = get_settings()
        if not settings.uses_own_cluster:
            fail("CITYOPS_DATABASE_URL is set: that server is managed elsewhere, not by cityops")
        cluster_for(settings).stop()
        console.print("PostGIS stopped")
    run_guarded(action)


@app.command()
def status() -> None:
    """Where the database is, whether it answers, and its migration revision."""
    def action() -> None:
        settings = get_settings()
        if settings.uses_own_cluster:
            cluster = cluster_for(settings)
            state = "running" if cluster.is_running() else "stopped" if cluster.is_initialised() else "not created"
            console.print(f"self-managed cluster: {state} ({cluster.data_dir})")
            if state != "running":
                raise SystemExit(3)
        info = conninfo(settings)
        with open_connection(info) as conn:
            postgis = require_postgis(conn)
        revision = migrate.current_revision(info)
        head = migrate.head_revision()
        console.print(f"database: {describe(info)}; PostGIS {postgis}; schema {revision or 'empty'} (latest {head})")
    run_guarded(action)


def _prepared_conninfo() -> str:
    settings = get_settings()
    provision.start_server(settings)
    if settings.uses_own_cluster:
        return provision.create_database(settings, settings.database_name)
    return conninfo(settings)


@app.command("migrate")
def migrate_command(revision: str = typer.Argument("head", help="target revision (default: the newest)")) -> None:
    """Apply the schema migrations."""
    def action() -> None:
        info = _prepared_conninfo()
        migrate.upgrade(info, revision)
        console.print(f"schema at {migrate.current_revision(info)}")
    run_guarded(action)


@app.command()
def downgrade(revision: str = typer.Argument(..., help="target revision, e.g. '-1' or 'base'")) -> None:
    """Roll the schema back (data in dropped tables is lost)."""
    def action() -> None:
        info = _prepared_conninfo()
        migrate.downgrade(info, revision)
        console.print(f"schema at {migrate.current_revision(info) or 'base'}")
    run_guarded(action)


@app.command()
def psql() -> None:
    """Open psql on the city database."""
    def action() -> None:
        if shutil.which("psql") is None:
            fail("psql not found: install postgresql-client-15")
        info = conninfo(get_settings())
        os.execvp("psql", ["psql", info])
    run_guarded(action)


@app.command()
def retention(alarm_months: int = typer.Option(24, min=1, help="keep alarms of this many months, the current one included"),
              case_event_months: int = typer.Option(60, min=1, help="keep case events of this many months, the current one included")) -> None:
    """Drop whole old months of alarms and case events (their partitions) and make the coming months'.
    A month that still holds an open alarm, or an event of a case not yet closed, is kept."""
    this_month = partitions.month_of(date.today())

    async def work():
        async with await psycopg.AsyncConnection.connect(conninfo(get_settings()), row_factory=dict_row, autocommit=True) as conn:
            outcome = {}
            for table, months in ((partitions.ALARMS, alarm_months), (partitions.CASE_EVENTS, case_event_months)):
                outcome[table.qualified] = await table.drop_months_before(conn, partitions.add_months(this_month, 1 - months))
            async with conn.transaction():
                await partitions.ensure_ahead(conn)
            return outcome

    def action() -> None:
        for table, (dropped, kept) in asyncio.run(work()).items():
            console.print(f"{table}: dropped {len(dropped)} month(s): {', '.join(dropped) or 'none'}"
                          + (f"; kept, still live: {', '.join(kept)}" if kept else ""), soft_wrap=True)
    run_guarded(action)


replica_app = typer.Typer(help="Streaming replicas of the self-managed cluster (hot standbys for reads).",
                          no_args_is_help=True)
app.add_typer(replica_app, name="replica")


def _own_cluster():
    settings = get_settings()
    if not settings.uses_own_cluster:
        fail("CITYOPS_DATABASE_URL is set: make replicas of that server with its own tools (pg_basebackup -R)")
    return settings, cluster_for(settings)


@replica_app.command("add")
def replica_add(name: str = typer.Argument("r1", help="the replica's name (its folder under replicas/)"),
                apply_delay_ms: int = typer.Option(0, min=0, help="hold replay back this long (testing lag)")) -> None:
    """Make a streaming replica of the running cluster (pg_basebackup -R) and start it."""
    def action() -> None:
        settings, cluster = _own_cluster()
        replica = cluster.add_replica(name, apply_delay_ms=apply_delay_ms)
        console.print(f"replica {name} streaming; socket in {replica.socket_dir}")
        console.print(f"route reads to it: CITYOPS_READ_DATABASE_URL='{replica.conninfo(settings.database_name)}'",
                      soft_wrap=True)
    run_guarded(action)


@replica_app.command("list")
def replica_list() -> None:
    """The replicas, whether they run, and how far behind the primary they replay."""
    def action() -> None:
        _, cluster = _own_cluster()
        names = cluster.replica_names()
        if not names:
            console.print("no replicas (cityops db replica add)")
        for name in names:
            replica = cluster.replica(name)
            if not replica.is_running():
                console.print(f"{name}: stopped ({replica.data_dir})")
                continue
            with open_connection(replica.conninfo("postgres")) as conn:
                row = conn.execute("SELECT pg_last_wal_replay_lsn()::text AS lsn, "
                                   "extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS behind_s").fetchone()
            behind = f"{row['behind_s']:.1f} s since its last replayed commit" if row["behind_s"] is not None else "nothing replayed yet"
            console.print(f"{name}: running, replayed to {row['lsn']}, {behind}; socket {replica.socket_dir}", soft_wrap=True)
    run_guarded(action)


@replica_app.command("remove")
def replica_remove(name: str = typer.Argument(..., help="the replica's name")) -> None:
    """Stop a replica and delete its folder."""
    def action() -> None:
        _, cluster = _own_cluster()
        cluster.remove_replica(name)
        console.print(f"replica {name} removed")
    run_guarded(action)
