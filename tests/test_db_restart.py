"""PostgreSQL restarted under load (issue 13): no hang, a bounded error window, recovery with no
manual step.

A cluster of its own (in the worktree's state folder, on its own socket: the shared test cluster
is never stopped) and a real uvicorn over it. Twenty clients keep reading items pages and vector
tiles, reading with a key and writing with one while the test stops PostgreSQL (`pg_ctl stop -m
fast`), keeps it down for a few seconds and starts it again. Every answer is the route's own or a
503 with Retry-After, none takes longer than the pool's wait plus slack, the same server process
answers everything again soon after the restart, and the change feed has listened again: a road
inserted afterwards shows in its vector tile (the cached tile was dropped).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Iterator

import httpx
import morecantile
import pytest

from bench.servers import free_port, running
from gis import migrate, provision
from gis.cluster import Cluster, cluster_for
from gis.db import open_connection
from gis.keys import create_key
from gis.settings import Settings
from tests.conftest import ARTIFACTS, RUN_ID, bearer

POOL_TIMEOUT_S = 1.0
OUTAGE_S = 4.0
RECOVERY_WITHIN_S = 30.0
CLIENTS = 20
TILE = morecantile.tms.get("WebMercatorQuad").tile(118.28, 33.96, 14)
TILE_PATH = f"/collections/roads/tiles/WebMercatorQuad/{TILE.z}/{TILE.y}/{TILE.x}"
ROAD_SQL = ("INSERT INTO city.road (name, road_class, width_m, geom) VALUES "
            "(%s, 'local', 6, ST_GeomFromText(%s, 4490))")


@pytest.fixture(scope="module")
def own_cluster(settings: Settings) -> Iterator[tuple[Cluster, str]]:
    """A small cluster that only this test stops and starts, with a migrated database and one road."""
    state = settings.state_dir / f"restart-{RUN_ID}"
    cluster = cluster_for(Settings(state_dir=state))
    cluster.initialise()
    with open(cluster.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
        conf.write("shared_buffers = '64MB'\nmax_connections = 60\n")
    cluster.start()
    try:
        info = provision.create_database(Settings(state_dir=state), "cityops")
        migrate.upgrade(info)
        with open_connection(info) as conn:
            conn.execute(ROAD_SQL, ["restart road 1", "LINESTRING(118.279 33.959, 118.281 33.961)"])
            conn.commit()
        yield cluster, info
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
        shutil.rmtree(cluster.socket_dir, ignore_errors=True)


def test_a_database_restart_under_load_recovers_without_a_hang(own_cluster, settings):
    cluster, info = own_cluster
    with open_connection(info) as conn:
        viewer, _ = create_key(conn, "viewer", [], "restart viewer")
        editor, _ = create_key(conn, "editor", [], "restart editor")
        conn.commit()
    requests = [
        ("GET", "/collections/roads/items?limit=50", {}, {200}),
        ("GET", TILE_PATH, {}, {200}),
        ("GET", "/imports/987654321", bearer(viewer), {404}),                   # keyed read
        ("DELETE", "/collections/stall_sites/items/987654321", {**bearer(editor), "If-Match": '"x"'}, {404}),  # keyed write
    ]
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": info, "CITYOPS_STATE_DIR": str(settings.state_dir), "CITYOPS_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
           "CITYOPS_RATE_IP_PER_S": "0", "CITYOPS_RATE_KEY_PER_S": "0", "CITYOPS_KEY_CACHE_S": "0"}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("db_restart_server", command, env, port, log_dir=ARTIFACTS, timeout_s=90) as base:
        answers: list[tuple[float, float, int, set[int], str | None]] = []  # (sent at, seconds, status, expected, Retry-After)
        marks: dict[str, float] = {}
        stop = asyncio.Event()

        async def client(i: int, http: httpx.AsyncClient) -> None:
            k = i
            while not stop.is_set():
                method, path, headers, expected = requests[k % len(requests)]
                k += 1
                sent = time.monotonic()
                try:
                    answer = await http.request(method, path, headers=headers)
                    status, retry = answer.status_code, answer.headers.get("Retry-After")
                except httpx.HTTPError as exc:  # a refused or dropped connection is a failure too
                    status, retry = 0, type(exc).__name__
                answers.append((sent, time.monotonic() - sent, status, expected, retry))
                if status == 503:
                    await asyncio.sleep(0.05)

        async def scenario() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:
                clients = [asyncio.create_task(client(i, http)) for i in range(CLIENTS)]
                await asyncio.sleep(3)
                marks["stop"] = time.monotonic()
                await asyncio.to_thread(cluster.stop)
                marks["down"] = time.monotonic()
                await asyncio.sleep(OUTAGE_S)
                await asyncio.to_thread(cluster.start)
                marks["up"] = time.monotonic()
                # until every kind of request has answered as it should for 3 s in a row
                while time.monotonic() - marks["up"] < RECOVERY_WITHIN_S:
                    await asyncio.sleep(0.5)
                    recent = [a for a in answers if a[0] > time.monotonic() - 3]
                    if marks.get("recovered") is None:
                        failing = [a for a in answers if a[0] > marks["up"] and a[2] not in a[3]]
                        last_failure = max((a[0] for a in failing), default=marks["up"])
                        if recent and time.monotonic() - last_failure > 3 and all(a[2] in a[3] for a in recent):
                            marks["recovered"] = last_failure
                            break
                stop.set()
                await asyncio.gather(*clients)

        asyncio.run(scenario())

        before = [a for a in answers if a[0] + a[1] < marks["stop"]]
        assert before and all(status in expected for _, _, status, expected, _ in before), "not all served before the restart"
        unexpected = {(status, retry) for _, _, status, expected, retry in answers if status not in expected and status != 503}
        assert not unexpected, f"answers other than the route's own or 503: {unexpected}"
        refusals = [a for a in answers if a[2] == 503]
        assert refusals, "no request met the outage"
        assert all(retry and int(retry) >= 1 for *_, retry in refusals), "a 503 without Retry-After"
        slowest = max(seconds for _, seconds, *_ in answers)
        assert slowest < POOL_TIMEOUT_S + 10, f"a request hung {slowest:.1f} s"
        assert "recovered" in marks, f"still failing {RECOVERY_WITHIN_S} s after PostgreSQL was back"
        window = marks["recovered"] - marks["stop"]
        print(f"{len(answers)} requests, {len(refusals)} 503s, slowest {slowest:.2f} s; PostgreSQL down "
              f"{marks['up'] - marks['stop']:.1f} s, errors until {window:.1f} s after the stop")

        # the change feed listens again: a road written now drops the cached tile within seconds
        etag = httpx.get(f"{base}{TILE_PATH}", timeout=30).headers["ETag"]
        with open_connection(info) as conn:
            conn.execute(ROAD_SQL, ["restart road 2", "LINESTRING(118.2795 33.9605, 118.2805 33.9595)"])
            conn.commit()
        deadline = time.monotonic() + 15
        while httpx.get(f"{base}{TILE_PATH}", timeout=30).headers["ETag"] == etag:
            assert time.monotonic() < deadline, "the tile cache never heard of the road written after the restart"
            time.sleep(0.2)
        assert httpx.get(f"{base}/collections/roads/items", timeout=30).json()["numberMatched"] == 2
