"""A streaming replica behind tiles, Features pages and planners' queries: reads go to it, a change is never served stale from it
(the replica replays 1.5 s late here), and a replica that goes away costs no errors."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator

import mapbox_vector_tile
import morecantile
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from gis.cluster import cluster_for
from gis.db import open_connection
from gis.replication import ReadRouter, lsn_value
from gis.settings import Settings
from tests.support.cli import cityops

REPLICA = f"test_{os.getpid()}"
APPLY_DELAY_MS = 1500
Z = 16


@pytest.fixture(scope="module")
def replica(settings: Settings, city_db: str) -> Iterator[str]:
    """A replica of the test cluster made by the CLI, replaying 1.5 s behind; its conninfo for the city."""
    if not settings.uses_own_cluster:
        pytest.fail("replica tests need the self-managed cluster (unset CITYOPS_DATABASE_URL)")
    added = cityops("db", "replica", "add", REPLICA, "--apply-delay-ms", str(APPLY_DELAY_MS), timeout=300)
    assert added.returncode == 0, added.stderr
    assert "CITYOPS_READ_DATABASE_URL=" in added.stderr
    try:
        yield cluster_for(settings).replica(REPLICA).conninfo(psycopg.conninfo.conninfo_to_dict(city_db)["dbname"])
    finally:
        removed = cityops("db", "replica", "remove", REPLICA)
        assert removed.returncode == 0, removed.stderr


@pytest.fixture(scope="module")
def replica_client(settings: Settings, city_db: str, replica: str) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"read_database_url": replica}), conninfo=city_db)
    with TestClient(app) as test_client:
        yield test_client


def _stall_site(city_db: str) -> dict:
    with open_connection(city_db) as conn:
        return conn.execute("SELECT code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM city.stall_site "
                            "ORDER BY code OFFSET 40 LIMIT 1").fetchone()


def _codes_in_tile(client: TestClient, tile: morecantile.Tile) -> set[str]:
    response = client.get(f"/collections/stall_sites/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}")
    assert response.status_code in (200, 204), response.text
    if response.status_code == 204:
        return set()
    layers = mapbox_vector_tile.decode(response.content)
    return {f["properties"]["code"] for layer in layers.values() for f in layer["features"]}


def test_the_replica_lists_and_serves_tiles(replica_client: TestClient, city_db: str):
    listed = cityops("db", "replica", "list")
    assert listed.returncode == 0 and f"{REPLICA}: running, replayed to" in listed.stderr, listed.stderr
    site = _stall_site(city_db)
    tile = morecantile.tms.get("WebMercatorQuad").tile(site["lon"], site["lat"], Z)
    reads = replica_client.app.state.reads
    before = reads.served["replica"]
    assert site["code"] in _codes_in_tile(replica_client, tile)
    assert reads.served["replica"] == before + 1
    page = replica_client.get("/collections/stall_sites/items", params={"limit": 5, "bbox": ",".join(
        str(v) for v in (site["lon"] - 1e-4, site["lat"] - 1e-4, site["lon"] + 1e-4, site["lat"] + 1e-4))})
    assert page.status_code == 200 and site["code"] in page.text
    nearest = replica_client.get("/queries/nearest/stall_sites", params={"lon": site["lon"], "lat": site["lat"], "n": 1})
    assert nearest.status_code == 200 and nearest.json()["features"][0]["distance_m"] == 0.0, nearest.text
    assert reads.served["replica"] == before + 3, "Features pages and planners' queries read the replica too"


def test_a_moved_feature_never_comes_back_from_a_lagging_replica(replica_client: TestClient, city_db: str):
    site = _stall_site(city_db)
    tile = morecantile.tms.get("WebMercatorQuad").tile(site["lon"], site["lat"], Z)
    assert site["code"] in _codes_in_tile(replica_client, tile)  # cached now
    reads = replica_client.app.state.reads
    lagging_before = reads.served["lagging"]
    with open_connection(city_db) as conn:
        conn.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, 0.02, 0) WHERE code = %s", [site["code"]])
        conn.commit()
    written = time.monotonic()
    seen: list[tuple[float, bool]] = []
    try:
        while time.monotonic() - written < APPLY_DELAY_MS / 1000 + 1.0:
            seen.append((time.monotonic() - written, site["code"] in _codes_in_tile(replica_client, tile)))
            time.sleep(0.05)
    finally:
        with open_connection(city_db) as conn:
            conn.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, -0.02, 0) WHERE code = %s", [site["code"]])
            conn.commit()
    first_gone = next((i for i, (_, present) in enumerate(seen) if not present), None)
    assert first_gone is not None, "the moved site was served for good: an old tile from the lagging replica was cached"
    assert seen[first_gone][0] < 1.0, f"the moved site was still served {seen[first_gone][0]:.2f} s after the write"
    back = [at for at, present in seen[first_gone:] if present]
    assert not back, f"the old tile came back from the lagging replica at {back[0]:.2f} s"
    assert reads.served["lagging"] > lagging_before, "the replica was never found behind: the test proved nothing"


def test_reads_go_to_the_primary_while_the_replica_is_down(replica_client: TestClient, settings: Settings, city_db: str):
    reads = replica_client.app.state.reads
    reads.rest_after_failure_s = 1.0
    replica_cluster = cluster_for(settings).replica(REPLICA)
    site = _stall_site(city_db)
    tms = morecantile.tms.get("WebMercatorQuad")
    replica_cluster.stop()
    try:
        down_before = reads.served["replica_down"]
        started = time.monotonic()
        for dx in range(1, 6):  # tiles not cached yet, so each is built
            tile = tms.tile(site["lon"] + dx * 0.01, site["lat"], Z)
            _codes_in_tile(replica_client, tile)
        assert time.monotonic() - started < 5 * 0.5 + reads.checkout_timeout_s, "reads waited on the dead replica"
        assert reads.served["replica_down"] > down_before
    finally:
        replica_cluster.start()
    time.sleep(reads.rest_after_failure_s)
    replica_before = reads.served["replica"]
    deadline = time.monotonic() + 20
    dx = 10
    while reads.served["replica"] == replica_before and time.monotonic() < deadline:
        dx += 1
        _codes_in_tile(replica_client, tms.tile(site["lon"] + dx * 0.01, site["lat"], Z))
        time.sleep(0.2)
    assert reads.served["replica"] > replica_before, "reads never went back to the restarted replica"


def test_a_burst_of_changes_reads_the_primary_position_once_a_round(databases):
    """Notes of a burst return without waiting on the primary and share WAL-position queries; a read
    after the burst still waits for a watermark at or past the last change's commit."""
    info = databases.create("watermark_burst")

    async def burst() -> tuple[Counter, str, str]:
        options = {"row_factory": dict_row, "autocommit": True}
        primary = AsyncConnectionPool(info, min_size=1, max_size=2, kwargs=options, open=False)
        stand_in = AsyncConnectionPool(info, min_size=1, max_size=2, kwargs=options, open=False)
        await primary.open(wait=True)
        await stand_in.open(wait=True)  # the primary standing in for a replica: never behind
        try:
            reads = ReadRouter(primary, stand_in)
            async with primary.connection() as conn:
                await conn.execute("CREATE TABLE burst (n integer)")
                for n in range(300):  # 300 commits, whose notifications then come in one burst
                    await conn.execute("INSERT INTO burst VALUES (%s)", [n])
                committed = (await (await conn.execute("SELECT pg_current_wal_lsn()::text AS lsn")).fetchone())["lsn"]
            for _ in range(300):
                await reads.note_change()
            async with reads.connection() as conn:
                assert (await (await conn.execute("SELECT count(*) AS n FROM burst")).fetchone())["n"] == 300
            return reads.served, reads.watermark, committed
        finally:
            await stand_in.close()
            await primary.close()

    served, watermark, committed = asyncio.run(burst())
    assert 1 <= served["watermark_reads"] < 300 / 10, served  # not one query per notification
    assert lsn_value(watermark) >= lsn_value(committed) and served["replica"] == 1
