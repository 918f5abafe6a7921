"""The change feed under stress: its LISTEN connection killed while a write goes unheard (the feed
reconnects and says "anything may have changed", so the cache and the wall flush), a tile being
built while its invalidation arrives, and two server processes on one database both invalidated."""

from __future__ import annotations

import sys
import threading
import time

import httpx
import mapbox_vector_tile
import morecantile
import pytest

from bench.servers import free_port, running
from gis.db import open_connection
from tests.conftest import ARTIFACTS
from tests.support.live_events import EventStream

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
DEADLINE_S = 1.0
RECONNECT_DEADLINE_S = 5.0  # the feed retries after 0.5 s; then the flush, within a second


def _state(url: str, objcode: str) -> str | None:
    response = httpx.get(url)
    if response.status_code == 204:
        return None
    features = mapbox_vector_tile.decode(response.content).get("manhole_covers", {"features": []})["features"]
    return {f["properties"]["objcode"]: f["properties"]["sensor_state"] for f in features}.get(objcode)


def _wait(fetch, wanted, deadline_s: float):
    started = time.monotonic()
    while (seen := fetch()) != wanted:
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"not {wanted!r} within {deadline_s} s; last {seen!r}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def cover(city_db):
    """A normal manhole cover and the URL of its z17 tile (per server); its state is put back afterwards."""
    with open_connection(city_db) as conn:
        row = conn.execute("SELECT objcode, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM city.manhole_cover_v "
                           "WHERE sensor_state = 'normal' ORDER BY objcode DESC LIMIT 1").fetchone()
    tile = WEB_MERCATOR.tile(row["lon"], row["lat"], 17)
    yield {**row, "path": f"/collections/manhole_covers/tiles/WebMercatorQuad/17/{tile.y}/{tile.x}"}
    _set_state(city_db, row["objcode"], "normal")


def _set_state(city_db: str, objcode: str, state: str) -> None:
    with open_connection(city_db) as conn:
        conn.execute("UPDATE city.manhole_sensor SET state = %s WHERE objcode = %s", [state, objcode])
        conn.commit()


def _cached(url: str) -> None:
    first = httpx.get(url)
    assert httpx.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def _listeners(conn, database: str) -> list[int]:
    return [r["pid"] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query ILIKE 'LISTEN%%' AND pid <> pg_backend_pid()",
        [database]).fetchall()]


def test_a_write_missed_while_the_feed_reconnects_is_flushed(live_server, city_db, cover):
    """Kill the server's LISTEN connection and write at once, while nobody listens: the write's
    notification is lost, yet after the reconnect the cached tile shows it and the wall is told
    that anything may have changed."""
    url = live_server + cover["path"]
    _cached(url)
    stream = EventStream(f"{live_server}/live")
    try:
        at, _ = stream.next("figures", 0)
        with open_connection(city_db, autocommit=True) as admin:
            database = admin.info.dbname
            # every feed on this database (the live server's, and the in-process app's if the session made one)
            listeners = _listeners(admin, database)
            assert listeners
            for pid in listeners:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            admin.execute("UPDATE city.manhole_sensor SET state = 'alarm' WHERE objcode = %s", [cover["objcode"]])
        seconds = _wait(lambda: _state(url, cover["objcode"]), "alarm", RECONNECT_DEADLINE_S)
        at, change = stream.change_of("*", at, RECONNECT_DEADLINE_S)
        assert change["tables"] == ["*"]
        stream.next("figures", at)
        with open_connection(city_db, autocommit=True) as admin:
            assert len(_listeners(admin, database)) == len(listeners)  # listening again
        print(f"missed write visible after the reconnect in {seconds:.2f} s")
    finally:
        stream.close()
    # and the reconnected feed hears the next write as usual
    _set_state(city_db, cover["objcode"], "offline")
    _wait(lambda: _state(url, cover["objcode"]), "offline", DEADLINE_S)


def test_a_tile_built_while_its_invalidation_arrives_is_not_kept(live_server, city_db, cover):
    """A tile not yet cached is requested while a writer holds the sensor table locked, so its build
    waits; the writer changes the cover and commits, and the build and the invalidation race.
    Whichever wins, the tile served afterwards shows the change and keeps showing it.
    (PostgreSQL takes the waiting statement's snapshot once it holds the lock, so here the build
    reads the new row; the cache's refusal of a build older than an invalidation is held by
    tests/test_tile_cache.py::test_a_tile_built_before_an_invalidation_is_not_stored.)"""
    for attempt, state in enumerate(("alarm", "offline", "normal")):
        url = f"{live_server}{cover['path']}?filter=objcode<>'attempt {attempt}'"  # a new cache key each time
        answered: list[str | None] = []
        with open_connection(city_db) as writer:
            writer.execute("LOCK TABLE city.manhole_sensor IN ACCESS EXCLUSIVE MODE")
            writer.execute("UPDATE city.manhole_sensor SET state = %s WHERE objcode = %s", [state, cover["objcode"]])
            request = threading.Thread(target=lambda: answered.append(_state(url, cover["objcode"])), daemon=True)
            request.start()
            time.sleep(0.5)  # the build is waiting on the lock
            assert not answered
            writer.commit()
        request.join(30)
        assert answered and answered[0] in (state, ("normal", "alarm", "offline")[attempt])
        _wait(lambda: _state(url, cover["objcode"]), state, DEADLINE_S)
        time.sleep(0.5)
        assert _state(url, cover["objcode"]) == state


def test_two_server_processes_are_both_invalidated(live_server, city_db, settings, cover):
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir)}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("second_server", command, env, port, log_dir=ARTIFACTS, timeout_s=60) as second:
        urls = [live_server + cover["path"], second + cover["path"]]
        for url in urls:
            _cached(url)
            assert _state(url, cover["objcode"]) == "normal"
        _set_state(city_db, cover["objcode"], "alarm")
        for url in urls:
            _wait(lambda: _state(url, cover["objcode"]), "alarm", DEADLINE_S)
