"""The demo city: the figures Suqian reports, standard codes, grid numbering, one-shot loading."""

from __future__ import annotations

import pytest

from gis.db import open_connection
from gis.errors import Conflict
from layers.demo.load import load_demo
from layers.demo.plan import plan_city


@pytest.fixture(scope="module")
def db(city_db):
    with open_connection(city_db) as conn:
        yield conn


def one(conn, query: str, params=()):
    return next(iter(conn.execute(query, params).fetchone().values()))


def test_five_real_districts_of_suqian(db):
    rows = db.execute("SELECT code, name FROM city.district ORDER BY code").fetchall()
    assert [(r["code"], r["name"]) for r in rows] == [
        ("321302", "宿城区"), ("321311", "宿豫区"), ("321322", "沭阳县"), ("321323", "泗阳县"), ("321324", "泗洪县")]
    assert one(db, "SELECT count(*) FROM city.municipality WHERE code = '321300'") == 1


def test_city_centre_and_canal(db):
    centre = db.execute("SELECT ST_X(c) AS lon, ST_Y(c) AS lat FROM (SELECT ST_Centroid(ST_Collect(geom)) c FROM city.street WHERE district_code IN ('321302','321311')) s").fetchone()
    assert abs(centre["lon"] - 118.28) < 0.05 and abs(centre["lat"] - 33.96) < 0.05
    assert one(db, "SELECT count(*) FROM city.water WHERE name = '京杭大运河'") == 1
    # The canal separates 宿城区 (west) from 宿豫区 (east) in the city.
    assert one(db, "SELECT count(*) FROM city.street s JOIN city.water w ON ST_Intersects(s.geom, ST_Buffer(w.geom, -0.0001))") == 0


def test_reported_figures(db):
    assert one(db, "SELECT count(*) FROM city.manhole_sensor") == 6371
    assert one(db, "SELECT count(*) FROM city.manhole_cover_v") == 6371
    assert one(db, "SELECT count(*) FROM city.stall_site") == 950
    assert one(db, "SELECT count(*) FROM city.stall_site WHERE occupied > 0") == 818
    assert one(db, "SELECT count(*) FROM city.component WHERE class_code = '0136'") == 889
    components = one(db, "SELECT count(*) FROM city.component")
    assert 90_000 <= components <= 110_000
    closure = one(db, "SELECT count(*) FILTER (WHERE state IN ('closed','evaluated'))::float / count(*) FROM city.case_file WHERE filed_at IS NOT NULL")
    assert 0.97 <= closure <= 0.99
    assert one(db, "SELECT count(*) FROM city.case_file WHERE reported_at > now() - interval '1 day'") > 50
    assert one(db, "SELECT count(*) FROM city.alarm WHERE status <> 'cleared'") > 0
    assert one(db, "SELECT count(*) FROM city.manhole_sensor WHERE state = 'alarm'") > 0


def test_unit_grids_are_about_10000_m2_and_cover_the_towns(db):
    stats = db.execute("SELECT count(*) AS n, avg(area_m2) AS mean, max(area_m2) AS biggest FROM city.unit_grid").fetchone()
    assert stats["n"] > 15_000
    assert 9_000 < stats["mean"] <= 10_000 and stats["biggest"] <= 10_000.5
    # every component lies in the grid its code names
    assert one(db, "SELECT count(*) FROM city.component c JOIN city.unit_grid g USING (bgcode) WHERE NOT ST_Intersects(c.geom, g.geom)") == 0


def test_grids_are_numbered_west_to_east_then_north_to_south(db):
    community = one(db, "SELECT community_code FROM city.unit_grid GROUP BY 1 HAVING count(*) = 100 LIMIT 1")
    rows = db.execute(
        "SELECT bgcode, ST_X(ST_Centroid(geom)) AS x, ST_Y(ST_Centroid(geom)) AS y FROM city.unit_grid "
        "WHERE community_code = %s ORDER BY bgcode", [community]).fetchall()
    first_row = rows[:10]
    assert all(a["x"] < b["x"] for a, b in zip(first_row, first_row[1:]))          # west -> east
    assert rows[0]["y"] > rows[10]["y"] > rows[20]["y"]                            # north -> south
    assert all(r["bgcode"].startswith(community) for r in rows)


def test_codes_follow_gb_t_30428(db):
    assert one(db, "SELECT count(*) FROM city.component WHERE objcode !~ '^[0-9]{16}$' OR left(objcode, 6) <> district_code") == 0
    assert one(db, "SELECT count(*) FROM city.unit_grid WHERE bgcode !~ '^[0-9]{15}$'") == 0
    assert one(db, "SELECT count(DISTINCT class_code) FROM city.component") >= 20


def test_plan_is_deterministic():
    first, second = plan_city(), plan_city()
    assert [g["bgcode"] for p in first for g in p.grids] == [g["bgcode"] for p in second for g in p.grids]


def test_second_load_is_refused_and_leaves_the_city_untouched(city_db):
    with open_connection(city_db) as conn:
        before = one(conn, "SELECT count(*) FROM city.component")
        with pytest.raises(Conflict, match="already holds a city"):
            load_demo(conn, scale=1)
        conn.rollback()
        assert one(conn, "SELECT count(*) FROM city.component") == before
