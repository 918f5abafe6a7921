"""Opening a case: routed by where it lies, deadline from its class in working hours, first event written; a point
outside every grid or a case with no class is refused with nothing written."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg.rows import dict_row

from gis.errors import InvalidInput
from ops.calendar import read_calendar
from ops.cases import open_case


async def _open(info: str, **kwargs):
    async with await psycopg.AsyncConnection.connect(info, row_factory=dict_row) as conn:
        return await open_case(conn, **kwargs)


async def _calendar(info: str):
    async with await psycopg.AsyncConnection.connect(info, row_factory=dict_row) as conn:
        return await read_calendar(conn)


def _grid_centre(info: str) -> dict:
    with psycopg.connect(info, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT g.bgcode, g.district_code, g.responsible_unit_id, ST_X(ST_PointOnSurface(g.geom)) AS lon, "
            "ST_Y(ST_PointOnSurface(g.geom)) AS lat, "
            "(SELECT r.responsible_unit_id FROM city.responsible_grid r "
            " WHERE ST_Intersects(r.geom, ST_PointOnSurface(g.geom)) ORDER BY r.code LIMIT 1) AS grid_unit "
            "FROM city.unit_grid g ORDER BY g.bgcode OFFSET 500 LIMIT 1").fetchone()


def test_a_case_is_routed_by_its_grid_and_gets_its_class_deadline(city_db: str):
    grid = _grid_centre(city_db)
    case = asyncio.run(_open(city_db, source="supervisor", lon=grid["lon"], lat=grid["lat"],
                             event_class_code="0402", description="井盖缺失", actor="inspector 7"))
    assert case["bgcode"] == grid["bgcode"] and case["district_code"] == grid["district_code"]
    assert case["responsible_unit_id"] == (grid["grid_unit"] or grid["responsible_unit_id"])
    assert case["state"] == "reported" and case["case_no"].startswith(str(case["reported_at"].year))
    with psycopg.connect(city_db, row_factory=dict_row) as conn:
        hours = conn.execute("SELECT time_limit_hours FROM city.event_class WHERE code = '0402'").fetchone()["time_limit_hours"]
        events = conn.execute("SELECT state, actor FROM city.case_event WHERE case_id = %s", [case["id"]]).fetchall()
        conn.execute("DELETE FROM city.case_file WHERE id = %s", [case["id"]])
    assert case["deadline_at"] == asyncio.run(_calendar(city_db)).add_working_hours(case["reported_at"], hours)
    assert events == [{"state": "reported", "actor": "inspector 7"}]


@pytest.mark.parametrize("kwargs, reason", [
    ({"lon": 100.0, "lat": 20.0, "event_class_code": "0402"}, "no unit grid"),
    ({"event_class_code": None}, "either an event class or a component class"),
    ({"source": "rumour", "event_class_code": "0402"}, "unknown case source"),
])
def test_a_case_that_cannot_be_routed_is_refused_and_nothing_is_written(city_db: str, kwargs: dict, reason: str):
    grid = _grid_centre(city_db)
    with psycopg.connect(city_db) as conn:
        before = conn.execute("SELECT count(*) FROM city.case_file").fetchone()[0]
    with pytest.raises(InvalidInput, match=reason):
        asyncio.run(_open(city_db, **{"source": "public", "lon": grid["lon"], "lat": grid["lat"], **kwargs}))
    with psycopg.connect(city_db) as conn:
        assert conn.execute("SELECT count(*) FROM city.case_file").fetchone()[0] == before
