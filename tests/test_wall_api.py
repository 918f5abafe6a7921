"""What the wall reads, checked against the tables: search by component code, grid code and name,
`/grids/{bgcode}`, and the live figures of `GET /live` (stall sites, cases today in the city's
day, the 30-day closure rate), which follow a plain SQL write."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gis.db import open_connection
from tests.support.live_events import EventStream

CITY_DAY = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def grid(city_db) -> dict:
    """A unit grid near the centre with everything the tables say about its place."""
    with open_connection(city_db) as conn:
        return conn.execute(
            "SELECT g.bgcode, g.area_m2, c.code AS community_code, c.name AS community_name, s.code AS street_code, "
            "s.name AS street_name, d.code AS district_code, d.name AS district_name, u.name AS responsible_unit_name, "
            "ST_XMin(g.geom) AS w, ST_YMin(g.geom) AS s, ST_XMax(g.geom) AS e, ST_YMax(g.geom) AS n "
            "FROM city.unit_grid g JOIN city.community c ON c.code = g.community_code JOIN city.street s ON s.code = c.street_code "
            "JOIN city.district d ON d.code = g.district_code JOIN city.responsible_unit u ON u.id = g.responsible_unit_id "
            "ORDER BY g.geom <-> ST_SetSRID(ST_Point(118.28, 33.96), 4490) LIMIT 1").fetchone()


def test_grid_values_are_the_tables(client, grid):
    body = client.get(f"/grids/{grid['bgcode']}").json()
    for field in ("bgcode", "community_code", "community_name", "street_code", "street_name", "district_code",
                  "district_name", "responsible_unit_name"):
        assert body[field] == grid[field], field
    assert body["area_m2"] == pytest.approx(grid["area_m2"])
    # the codes nest as GB/T 30428.1 says: county 6 + street 3 + community 3 + sequence 3
    assert grid["bgcode"].startswith(grid["community_code"]) and grid["community_code"].startswith(grid["street_code"])
    assert client.get("/grids/000000000000000").status_code == 404
    assert client.get("/grids/12345").status_code in (400, 404, 422)


def test_search_by_grid_code_finds_that_grid_and_its_box(client, grid):
    (hit,) = client.get("/search", params={"q": grid["bgcode"]}).json()["hits"]
    assert hit["kind"] == "unit_grid" and hit["code"] == grid["bgcode"] and hit["detail"] == grid["community_name"]
    assert hit["bbox"] == pytest.approx([grid["w"], grid["s"], grid["e"], grid["n"]])
    assert client.get("/search", params={"q": "999999999999999"}).json()["hits"] == []


def test_search_by_name_finds_the_place_and_ranks_districts_first(client, grid, city_db):
    hits = client.get("/search", params={"q": grid["community_name"]}).json()["hits"]
    assert any(h["kind"] == "community" and h["code"] == grid["community_code"] and h["detail"] == grid["street_name"] for h in hits)
    hits = client.get("/search", params={"q": grid["district_name"][:2]}).json()["hits"]
    assert hits[0]["kind"] == "district" and hits[0]["code"] == grid["district_code"]
    # a street by part of its name, and by its code's prefix
    assert any(h["code"] == grid["street_code"] for h in client.get("/search", params={"q": grid["street_name"]}).json()["hits"])
    assert any(h["code"] == grid["street_code"] for h in client.get("/search", params={"q": grid["street_code"]}).json()["hits"])
    # LIKE's wildcards are literal text here
    assert client.get("/search", params={"q": "%"}).json()["hits"] == []


def test_search_by_component_code(client, city_db):
    with open_connection(city_db) as conn:
        cover = conn.execute("SELECT objcode, objname, ST_X(geom) AS x, ST_Y(geom) AS y FROM city.manhole_cover_v "
                             "ORDER BY objcode DESC LIMIT 1").fetchone()
    (hit,) = client.get("/search", params={"q": cover["objcode"]}).json()["hits"]
    assert hit["kind"] == "component" and hit["name"] == cover["objname"]
    west, south, east, north = hit["bbox"]
    assert west < cover["x"] < east and south < cover["y"] < north


def _figures_from_the_tables(conn) -> dict:
    """The README's definitions, computed here (not by gis/figures.py)."""
    start = datetime.now(CITY_DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    stalls = conn.execute("SELECT count(*) FILTER (WHERE occupied > 0) AS occupied, count(*) AS total FROM city.stall_site").fetchone()
    today = conn.execute("SELECT count(*) FILTER (WHERE reported_at >= %(d)s) AS reported, count(*) FILTER (WHERE filed_at >= %(d)s) AS filed, "
                         "count(*) FILTER (WHERE closed_at >= %(d)s) AS closed FROM city.case_file", {"d": start}).fetchone()
    month = conn.execute("SELECT count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed, count(*) AS filed FROM city.case_file "
                         "WHERE filed_at >= now() - interval '30 days' AND state <> 'voided'").fetchone()
    return {"stall_sites": {**stalls, "percent": round(100 * stalls["occupied"] / stalls["total"], 1)},
            "cases_today": dict(today), "closure_rate_30d_percent": round(100 * month["closed"] / month["filed"], 1)}


def _shown(figures: dict) -> dict:
    return {"stall_sites": {k: figures["stall_sites"][k] for k in ("occupied", "total", "percent")},
            "cases_today": figures["cases_today"], "closure_rate_30d_percent": figures["closure_rate_30d_percent"]}


@pytest.fixture
def stream(live_server):
    events = EventStream(f"{live_server}/live")
    yield events
    events.close()


def test_live_figures_are_the_tables_and_follow_a_plain_sql_write(stream, city_db):
    at, first = stream.next("figures", 0)
    with open_connection(city_db) as conn:
        assert _shown(first) == _figures_from_the_tables(conn)
        # the demo city as Suqian reports it: 818 of 950 stall sites in use, about 98 % of cases closed
        assert (first["stall_sites"]["total"], first["stall_sites"]["percent"]) == (950, 86.1)
        assert 95 <= first["closure_rate_30d_percent"] <= 100
        site = conn.execute("SELECT id, occupied FROM city.stall_site WHERE occupied > 0 ORDER BY id LIMIT 1").fetchone()
        conn.execute("UPDATE city.stall_site SET occupied = 0 WHERE id = %s", [site["id"]])
        conn.commit()
    try:
        at, figures = stream.figures_after("city.stall_site", at)
        assert figures["stall_sites"]["occupied"] == first["stall_sites"]["occupied"] - 1
        with open_connection(city_db) as conn:
            assert _shown(figures) == _figures_from_the_tables(conn)
    finally:
        with open_connection(city_db) as conn:
            conn.execute("UPDATE city.stall_site SET occupied = %s WHERE id = %s", [site["occupied"], site["id"]])
            conn.commit()


def test_cases_today_count_the_city_day_not_the_servers(stream, city_db):
    """Two cases a minute either side of midnight in Asia/Shanghai: only the later one is today's
    (whatever the hour of the run, a UTC day would count them the other way at least once)."""
    at, before = stream.next("figures", 0)
    midnight = datetime.now(CITY_DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    with open_connection(city_db) as conn:
        template = conn.execute("SELECT kind, component_class_code, event_class_code, district_code, bgcode, source, geom "
                                "FROM city.case_file ORDER BY id LIMIT 1").fetchone()
        columns = list(template)
        ids = []
        for n, moment in enumerate((midnight - timedelta(minutes=1), midnight + timedelta(minutes=1))):
            row = conn.execute(
                f"INSERT INTO city.case_file ({', '.join(columns)}, case_no, reported_at, state) "
                f"VALUES ({', '.join(['%s'] * len(columns))}, %s, %s, 'reported') RETURNING id",
                [template[c] for c in columns] + [f"TEST-DAY-{n}", moment]).fetchone()
            ids.append(row["id"])
        conn.commit()
    try:
        at, figures = stream.figures_after("city.case_file", at)
        assert figures["cases_today"]["reported"] == before["cases_today"]["reported"] + 1
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.case_file WHERE id = ANY(%s)", [ids])
            conn.commit()

