"""Keyset paging of OGC API Features: next links carry a signed cursor, pages follow the SQL order
exactly (NULLs and mixed directions included) under filters, bbox, datetime and sortby, a cursor
is refused on any other query or when altered, and offset keeps working."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import time

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import pq
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from gis.changes import ChangeFeed
from gis.db import open_connection
from gis.settings import settings_of
from layers.live import LiveCatalogue


@pytest.fixture(scope="module")
def db(city_db):
    with open_connection(city_db) as conn:
        yield conn


def next_href(page: dict) -> str | None:
    return next((link["href"] for link in page["links"] if link["rel"] == "next"), None)


def walk(client, url: str, limit: int) -> tuple[list, list]:
    """Every page from `url` on, each `limit` features (the cursor does not depend on the page size):
    (the ids in order, numberMatched of each page)."""
    ids, matched = [], []
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["numberReturned"] == len(page["features"]) <= limit
        ids += [f["id"] for f in page["features"]]
        matched.append(page.get("numberMatched"))
        url = next_href(page)
        if url:
            assert "offset=" not in url and "cursor=" in url
            url = str(httpx.URL(url).copy_set_param("limit", limit)).replace("http://testserver", "")
    return ids, matched


def test_pages_follow_the_sql_order_with_nulls_and_mixed_directions(client, db):
    # open cases: event_class_code and deadline_at are NULL on some; DESC puts NULLs first, ASC last
    ids, matched = walk(client, "/collections/cases/items?limit=37&sortby=-event_class_code,deadline_at", 37)
    expected = [r["id"] for r in db.execute(
        "SELECT id FROM city.case_file WHERE state NOT IN ('closed', 'evaluated', 'voided') "
        "ORDER BY event_class_code DESC, deadline_at ASC, id")]
    assert ids == expected and len(expected) > 3 * 37
    assert matched[0] == len(expected) and set(matched[1:]) == {None}
    nulls = db.execute("SELECT count(*) FILTER (WHERE event_class_code IS NULL) AS a, count(*) FILTER (WHERE deadline_at IS NULL) AS b "
                       "FROM city.case_file WHERE state NOT IN ('closed', 'evaluated', 'voided')").fetchone()
    assert nulls["a"] > 37 and nulls["b"] > 0  # page boundaries fall inside the NULLs


@pytest.mark.parametrize("query", [
    "unit_grids/items?sortby=-area_m2&filter=district_code = '321302'",          # float sort key, CQL2
    "components/items?bbox=118.26,33.94,118.30,33.98&sortby=objname,-objcode",   # bbox, text key, key descending
    "cases/items?datetime=2000-01-01T00:00:00Z/..&sortby=-reported_at",          # datetime interval, timestamp key
    "stall_sites/items?district_code=321302&crs=http://www.opengis.net/def/crs/EPSG/0/4548",
])
def test_cursor_pages_hold_the_same_features_as_one_page(client, query):
    whole = client.get(f"/collections/{query}&limit=10000").json()
    assert "next" not in {link["rel"] for link in whole["links"]}
    ids, matched = walk(client, f"/collections/{query}&limit=97", 97)
    assert ids == [f["id"] for f in whole["features"]] and len(ids) > 97
    assert matched[0] == whole["numberMatched"] == len(ids)


def test_a_cursor_continues_only_its_own_query(client):
    base = "/collections/stall_sites/items?filter=capacity > 30&limit=10"
    first = client.get(base).json()
    cursor = dict(httpx.URL(next_href(first)).params)["cursor"]
    continued = client.get(f"{base}&cursor={cursor}").json()
    assert continued["features"][0]["id"] > first["features"][-1]["id"] and "numberMatched" not in continued
    # what the page looks like may change: CRS, properties, size, HTML
    for extra in ("&crs=http://www.opengis.net/def/crs/EPSG/0/3857", "&properties=code", "&limit=3", "&f=html"):
        answer = client.get(f"{base}&cursor={cursor}{extra}")
        assert answer.status_code == 200, (extra, answer.text)
    assert "First page" in client.get(f"{base}&cursor={cursor}&f=html").text
    plain = dict(httpx.URL(next_href(client.get("/collections/stall_sites/items?limit=10").json())).params)["cursor"]
    assert client.get(f"/collections/stall_sites/items?limit=10&cursor={plain}").status_code == 200
    payload, mac = cursor.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(["1"]).encode()).rstrip(b"=").decode()
    for url in (
        f"/collections/stall_sites/items?filter=capacity > 31&limit=10&cursor={cursor}",   # another filter
        f"/collections/stall_sites/items?limit=10&cursor={cursor}",                        # no filter
        f"{base}&sortby=-capacity&cursor={cursor}",                                        # another order
        f"{base}&bbox=118.2,33.9,118.3,34.0&cursor={cursor}",                              # a bbox added
        f"{base}&district_code=321302&cursor={cursor}",                                    # an equality filter added
        f"/collections/cases/items?limit=10&cursor={plain}",                               # another collection, same key
        f"{base}&cursor={forged}.{mac}",                                                   # another position, old signature
        f"{base}&cursor={payload}.{mac[:-2]}AA",                                           # a changed signature
        f"{base}&cursor=not-a-cursor",
        f"{base}&cursor={cursor}&offset=20",
    ):
        answer = client.get(url)
        assert answer.status_code == 400, (url, answer.text)
        assert "cursor" in answer.json()["description"], url


def test_offset_still_pages_with_counts_and_hands_over_to_a_cursor(client, db):
    ordered = [r["id"] for r in db.execute("SELECT id FROM city.stall_site ORDER BY id")]
    page = client.get("/collections/stall_sites/items?limit=400&offset=400").json()
    assert page["numberMatched"] == 950 and [f["id"] for f in page["features"]] == ordered[400:800]
    assert any(link["rel"] == "prev" for link in page["links"])
    following = client.get(next_href(page).replace("http://testserver", "")).json()
    assert [f["id"] for f in following["features"]] == ordered[800:]
    assert next_href(following) is None


def test_streamed_formats_continue_from_a_cursor_too(client):
    first = client.get("/collections/streetlights/items?limit=10&sortby=objcode").json()
    cursor = dict(httpx.URL(next_href(first)).params)["cursor"]
    rows = client.get(f"/collections/streetlights/items?limit=5&sortby=objcode&f=csv&cursor={cursor}").text.splitlines()
    assert len(rows) == 6 and rows[1].split(",")[0] > first["features"][-1]["id"]


def test_a_feature_added_before_the_cursor_shifts_no_page(client, city_db, db):
    """A live city is edited while a client pages: a feature that sorts before the cursor arrives
    between two pages. The cursor's page starts right after the last feature seen; an offset page
    would repeat one."""
    ordered = [r["id"] for r in db.execute("SELECT id FROM city.stall_site ORDER BY id")]
    first = client.get("/collections/stall_sites/items?limit=100").json()
    with open_connection(city_db) as conn:
        conn.execute("INSERT INTO city.stall_site (id, code, name, capacity, occupied, geom) "
                     "SELECT -16, 'T16-PAGING', name, capacity, occupied, geom FROM city.stall_site WHERE id = %s",
                     (ordered[0],))
        conn.commit()
    try:
        continued = client.get(str(httpx.URL(next_href(first)).copy_set_param("limit", 100))).json()
        by_offset = client.get("/collections/stall_sites/items?limit=100&offset=100").json()
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.stall_site WHERE id = -16")
            conn.commit()
    assert [f["id"] for f in continued["features"]] == ordered[100:200]
    assert by_offset["features"][0]["id"] == ordered[99]  # the shift the cursor avoids


# -- the cursor key: held by the live catalogue, so a page is one statement ------------------------

@pytest.fixture(scope="module")
def one_connection_client(settings, city_db, monkeypatch_module):
    """A second app on the same database (as a second worker or machine is), with a pool of one
    connection, so every statement a request sends goes through the connection the test traces."""
    monkeypatch_module.setenv("CITYOPS_SWEEP_INTERVAL_S", "3600")  # the operations sweep runs once, at start
    settings_of.cache_clear()  # settings are read once per process
    app = create_app(settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1}), conninfo=city_db)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch
        patch.undo()
        settings_of.cache_clear()


def statements_sent(test_client: TestClient, url: str) -> tuple[httpx.Response, list[str]]:
    """The response to `url` and the statements its request sent to the database (from libpq's trace
    of the pool's one connection: each simple Query or extended-protocol Execute is one statement)."""
    pool = test_client.app.state.pool

    async def traced(trace) -> None:
        await asyncio.sleep(0.5)  # the start-up sweep takes the connection first and is done before getconn returns
        conn = await pool.getconn()
        try:
            if trace is None:
                conn.pgconn.untrace()
            else:
                conn.pgconn.trace(trace.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        finally:
            await pool.putconn(conn)

    with tempfile.TemporaryFile("w+") as trace:
        test_client.portal.call(traced, trace)
        response = test_client.get(url)
        test_client.portal.call(traced, None)
        trace.seek(0)
        messages = [line.split("\t") for line in trace.read().splitlines()]
    sent = [fields[3] if fields[2] == "Query" else "execute" for fields in messages
            if fields[0] == "F" and fields[2] in ("Query", "Execute")]
    texts = [fields[3] for fields in messages if fields[0] == "F" and fields[2] in ("Query", "Parse")]
    return response, sent if len(sent) == 1 else texts + sent


def test_an_items_page_is_one_statement(one_connection_client):
    base = "/collections/stall_sites/items?filter=capacity > 30&limit=10"
    first, statements = statements_sent(one_connection_client, base)
    assert first.status_code == 200 and len(statements) == 1, statements
    cursor = dict(httpx.URL(next_href(first.json())).params)["cursor"]
    continued, statements = statements_sent(one_connection_client, f"{base}&cursor={cursor}")
    assert continued.status_code == 200 and len(statements) == 1, statements
    assert continued.json()["features"][0]["id"] > first.json()["features"][-1]["id"]


def test_cursors_hold_across_instances_of_one_database_and_not_another(client, one_connection_client, databases, settings):
    base = "/collections/stall_sites/items?sortby=-capacity&limit=25"
    whole = [f["id"] for f in client.get(f"{base.replace('limit=25', 'limit=1000')}").json()["features"]]
    issued_here = dict(httpx.URL(next_href(client.get(base).json())).params)["cursor"]
    issued_there = dict(httpx.URL(next_href(one_connection_client.get(base).json())).params)["cursor"]
    assert issued_here == issued_there  # one key per database, whichever process signs
    for reader in (client, one_connection_client):
        page = reader.get(f"{base}&cursor={issued_here}")
        assert page.status_code == 200 and [f["id"] for f in page.json()["features"]] == whole[25:50]
        rows = reader.get(f"{base}&cursor={issued_here}&f=csv").text.splitlines()
        assert [int(row.split(",")[0]) for row in rows[1:]] == whole[25:50]
    other = create_app(settings, conninfo=databases.create("paging_other"))  # migrated: a key of its own
    with TestClient(other) as other_client:
        assert other_client.get(base).status_code == 200
        for url in (f"{base}&cursor={issued_here}", f"{base}&cursor={issued_here}&f=csv"):
            answer = other_client.get(url)
            assert answer.status_code == 400 and "cursor" in answer.json()["description"], answer.text


def test_the_key_of_a_re_made_database_is_read_when_the_change_feed_reconnects(databases):
    """The catalogue keeps the key while the database lives; a restored or re-made database (a new
    key) cuts the change feed's connection, and its reconnect reloads the catalogue with the new key."""
    info = databases.create("paging_rekey")
    new_key = os.urandom(32)

    async def scenario() -> tuple[bytes, bytes]:
        catalogue, feed = LiveCatalogue(), ChangeFeed(info)
        options = {"row_factory": dict_row, "autocommit": True}
        async with AsyncConnectionPool(info, min_size=1, max_size=2, kwargs=options) as pool:
            await feed.start()
            try:
                async with pool.connection() as conn:
                    await catalogue.reload(conn)
                feed.subscribe(catalogue.change_subscriber(pool))
                before = catalogue.paging_key
                async with await psycopg.AsyncConnection.connect(info, **options) as conn:
                    await conn.execute("UPDATE city.paging_key SET secret = %s", [new_key])
                    assert catalogue.paging_key == before  # no statement per page: the key is held
                    await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE datname = current_database() AND query = 'LISTEN cityops_changes'")
                deadline = time.monotonic() + 20
                while catalogue.paging_key == before and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                return before, catalogue.paging_key
            finally:
                await feed.stop()

    before, after = asyncio.run(scenario())
    assert before != new_key and after == new_key
