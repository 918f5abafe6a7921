"""Migrations up and down, and the constraints that keep wrong data out of the database itself."""

from __future__ import annotations

import psycopg
import pytest

from gis import migrate
from gis.db import open_connection

CITY_TABLES = {
    "municipality", "district", "street", "community", "responsible_unit", "responsible_grid", "unit_grid",
    "component_class", "component", "manhole_sensor", "streetlight", "stall_site", "building",
    "illegal_building", "alarm", "event_class", "case_file", "case_event", "orthophoto", "api_key",
    "road", "water",
}


def _tables(info: str) -> set[str]:
    with open_connection(info) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'city' AND table_type = 'BASE TABLE'").fetchall()
    return {r["table_name"] for r in rows}


def test_migrations_go_up_down_and_up_again(databases):
    info = databases.create("migrations", migrated=False)
    migrate.upgrade(info)
    assert migrate.current_revision(info) == migrate.head_revision()
    assert CITY_TABLES <= _tables(info)
    migrate.downgrade(info, "base")
    assert migrate.current_revision(info) is None
    assert _tables(info) == set()
    migrate.upgrade(info)
    assert CITY_TABLES <= _tables(info)
    with open_connection(info) as conn:
        classes = conn.execute("SELECT count(*) AS n FROM city.component_class").fetchone()["n"]
    assert classes >= 40


def test_web_mercator_copy_and_area_are_generated(city_db):
    with open_connection(city_db) as conn:
        row = conn.execute(
            "SELECT ST_SRID(geom_3857) AS srid, ST_Distance(ST_Transform(geom, 3857), geom_3857) AS drift, area_m2 "
            "FROM city.unit_grid LIMIT 1").fetchone()
    assert row["srid"] == 3857 and row["drift"] < 1e-6
    assert 1_000 <= row["area_m2"] <= 10_001


@pytest.fixture
def conn(city_db):
    """A connection whose work is rolled back: constraint tests leave nothing behind."""
    with open_connection(city_db) as connection:
        yield connection
        connection.rollback()


def _rejects(conn, statement: str, params=(), error=psycopg.errors.IntegrityError):
    with pytest.raises(error):
        with conn.transaction():
            conn.execute(statement, params)


POINT = "SRID=4490;POINT(118.28 33.96)"


def _some_grid(conn) -> str:
    return conn.execute("SELECT bgcode FROM city.unit_grid WHERE district_code = '321302' LIMIT 1").fetchone()["bgcode"]


def test_component_code_must_be_16_digits_of_a_known_class_and_county(conn):
    insert = "INSERT INTO city.component (objcode, objname, geom) VALUES (%s, 'x', %s)"
    _rejects(conn, insert, ["32130201189", POINT])            # too short
    _rejects(conn, insert, ["321302011800000A", POINT])       # not digits
    _rejects(conn, insert, ["3213029999000001", POINT])       # unknown class 9999
    _rejects(conn, insert, ["9999990118000001", POINT])       # unknown county
    _rejects(conn, insert, ["3213020118000000", POINT])       # serial 000000


def test_component_grid_must_be_in_the_components_county(conn):
    other = conn.execute("SELECT bgcode FROM city.unit_grid WHERE district_code = '321311' LIMIT 1").fetchone()["bgcode"]
    _rejects(conn, "INSERT INTO city.component (objcode, objname, bgcode, geom) VALUES ('3213020118999999', 'x', %s, %s)", [other, POINT])


def test_grid_code_must_be_15_digits_under_a_known_community(conn):
    square = "SRID=4490;MULTIPOLYGON(((118 33,118.001 33,118.001 33.001,118 33.001,118 33)))"
    insert = "INSERT INTO city.unit_grid (bgcode, geom) VALUES (%s, %s)"
    _rejects(conn, insert, ["32130200100101", square])        # 14 digits: widened on import, not stored
    _rejects(conn, insert, ["999999001001001", square])       # no such community
    community = _some_grid(conn)[:12]
    _rejects(conn, insert, [community + "000", square])        # sequence 000


def test_invalid_or_empty_geometry_is_rejected(conn):
    bowtie = "SRID=4490;MULTIPOLYGON(((118 33,118.01 33.01,118.01 33,118 33.01,118 33)))"
    _rejects(conn, "INSERT INTO city.building (district_code, geom) VALUES ('321302', %s)", [bowtie])
    _rejects(conn, "INSERT INTO city.building (district_code, geom) VALUES ('321302', 'SRID=4490;MULTIPOLYGON EMPTY')")


def test_wrong_srid_is_rejected(conn):
    _rejects(conn, "INSERT INTO city.stall_site (code, name, district_code, capacity, geom) VALUES ('T1', 't', '321302', 5, 'SRID=4326;POINT(118 33)')",
             error=psycopg.errors.InvalidParameterValue)


def test_stall_count_cannot_exceed_capacity(conn):
    _rejects(conn, "UPDATE city.stall_site SET occupied = capacity + 1 WHERE id = 1")
    _rejects(conn, "UPDATE city.stall_site SET occupied = -1 WHERE id = 1")


def test_case_lifecycle_times_must_be_in_order(conn):
    case = conn.execute("SELECT id FROM city.case_file WHERE state = 'closed' LIMIT 1").fetchone()["id"]
    _rejects(conn, "UPDATE city.case_file SET closed_at = NULL WHERE id = %s", [case])
    _rejects(conn, "UPDATE city.case_file SET filed_at = reported_at - interval '1 hour' WHERE id = %s", [case])


def test_alarm_takes_its_covers_position(conn):
    cover = conn.execute("SELECT objcode, ST_AsText(geom) AS wkt FROM city.manhole_cover_v LIMIT 1").fetchone()
    alarm = conn.execute("INSERT INTO city.alarm (objcode, alarm_type) VALUES (%s, 'opened') RETURNING ST_AsText(geom) AS wkt", [cover["objcode"]]).fetchone()
    assert alarm["wkt"] == cover["wkt"]
    _rejects(conn, "INSERT INTO city.alarm (objcode, alarm_type) VALUES (%s, 'fire')", [cover["objcode"]])
