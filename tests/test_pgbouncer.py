"""pgbouncer 1.18 (Debian) in transaction mode with the shipped configuration: many concurrent
clients of a cityops server reach PostgreSQL through a handful of server connections, reads and
writes work (no server-side prepared statements), and the change feed still hears writes."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.cli.deploy import render_pgbouncer
from bench.servers import free_port, running
from gis.cluster import SOCKET_PORT, cluster_for
from gis.db import open_connection
from gis.settings import Settings
from tests.conftest import ARTIFACTS, bearer

SERVER_CONNECTIONS = 6


@pytest.fixture(scope="module")
def pgbouncer(settings: Settings, city_db: str) -> Iterator[str]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        pytest.fail("pgbouncer is not installed: scripts/install.sh installs it")
    # pgbouncer refuses to run as root: its folder must be the postgres user's, outside pytest's private tmp
    prefix = Path(tempfile.mkdtemp(prefix="cityops-pgbouncer-"))
    shutil.chown(prefix, "postgres", "postgres")
    port = free_port()
    dbname = psycopg.conninfo.conninfo_to_dict(city_db)["dbname"]
    config = prefix / "pgbouncer.ini"
    config.write_text(render_pgbouncer(dbname=dbname, server_host=str(cluster_for(settings).socket_dir),
                                       server_port=SOCKET_PORT, listen_port=port, pool_size=SERVER_CONNECTIONS,
                                       auth_type="any", auth_file=None, prefix=str(prefix)))
    process = subprocess.Popen(["runuser", "-u", "postgres", "--", binary, str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    info = f"host=127.0.0.1 port={port} dbname={dbname} user=cityops"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(info, prepare_threshold=None, connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"pgbouncer did not start; see {prefix}/pgbouncer.log") from None
                time.sleep(0.2)
        yield info
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def pooled_server(pgbouncer: str, city_db: str, settings: Settings) -> Iterator[str]:
    port = free_port()
    # The budget is under test, not the overload policy: 200 clients queued behind 6 server connections
    # on two cores wait longer than the default 5 s for a pooled connection (a fast 503 by design).
    env = {"CITYOPS_DATABASE_URL": pgbouncer, "CITYOPS_PGBOUNCER": "true", "CITYOPS_LISTEN_DATABASE_URL": city_db,
           "CITYOPS_POOL_MAX_SIZE": "40", "CITYOPS_POOL_TIMEOUT_S": "120", "CITYOPS_STATE_DIR": str(settings.state_dir)}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("pgbouncer_server", command, env, port, log_dir=ARTIFACTS, timeout_s=90) as base:
        yield base


def _server_connections(city_db: str) -> int:
    """Connections PostgreSQL holds for the city database, other than this one and the change feed's LISTEN."""
    with open_connection(city_db) as conn:
        return conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' "
            "AND query NOT LIKE 'LISTEN%%'").fetchone()["n"]


def test_two_hundred_concurrent_clients_share_a_few_server_connections(pooled_server: str, city_db: str):
    paths = ["/collections/manhole_covers/items?limit=50&offset={i}", "/collections/stall_sites/items?limit=20&offset={i}",
             "/tiles/WebMercatorQuad/14/{row}/{col}", "/collections"]
    baseline = _server_connections(city_db)  # other servers of the test run hold their own pools
    peak = [0]

    async def hammer() -> list[int]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=pooled_server, timeout=120, limits=limits) as client:
            async def one(i: int) -> int:
                path = paths[i % len(paths)].format(i=i, row=6660 + i % 5, col=13576 + i % 5)
                return (await client.get(path)).status_code

            async def watch() -> None:
                while True:
                    peak[0] = max(peak[0], await asyncio.to_thread(_server_connections, city_db))
                    await asyncio.sleep(0.2)
            watcher = asyncio.create_task(watch())
            try:
                return await asyncio.gather(*(one(i) for i in range(400)))
            finally:
                watcher.cancel()

    statuses = asyncio.run(hammer())
    assert all(status in (200, 204) for status in statuses), sorted(set(statuses))
    assert 0 < peak[0] - baseline <= SERVER_CONNECTIONS, \
        f"PostgreSQL saw {peak[0] - baseline} more connections; pgbouncer allows {SERVER_CONNECTIONS}"


def test_writes_go_through_the_pooler_and_the_feed_still_hears_them(pooled_server: str, city_db: str, keys: dict):
    with open_connection(city_db) as conn:
        site = conn.execute("SELECT code, capacity, occupied FROM city.stall_site ORDER BY code LIMIT 1").fetchone()
    occupied = (site["occupied"] + 1) % (site["capacity"] + 1)
    with httpx.Client(base_url=pooled_server, timeout=30) as client:
        with client.stream("GET", "/live") as live:
            response = client.put(f"/stall-sites/{site['code']}/occupancy", json={"occupied": occupied},
                                  headers=bearer(keys["editor"]))
            assert response.status_code == 200, response.text
            heard = False
            started = time.monotonic()
            for line in live.iter_lines():  # the first event (figures on connect) names no table
                if line.startswith("data:") and "city.stall_site" in line:
                    heard = True
                    break
                if time.monotonic() - started > 10:
                    break
    with open_connection(city_db) as conn:
        assert conn.execute("SELECT occupied FROM city.stall_site WHERE code = %s", [site["code"]]).fetchone()["occupied"] == occupied
        conn.execute("UPDATE city.stall_site SET occupied = %s WHERE code = %s", [site["occupied"], site["code"]])
        conn.commit()
    assert heard, "the live feed never reported the write made through pgbouncer"
