"""Cases (案卷): the one way a case comes into being, whatever reported it (an inspector, a sensor
alarm, a citizen's Open311 report, another system). The case is routed by where it lies: its unit
grid from the location, the district from the grid, the responsible unit from the responsible
grid (责任网格) covering the point, else the unit grid's own unit; its deadline from its class.

`city.case_file` and `city.case_event` are written only through this module."""

from __future__ import annotations

from typing import Literal

import psycopg

from gis.crs import STORAGE_SRID
from gis.errors import InvalidInput

CaseSource = Literal["supervisor", "video", "public", "superior", "sensor"]
SOURCES: tuple[str, ...] = ("supervisor", "video", "public", "superior", "sensor")

# Where a point lies: its unit grid (and so community, street, district) and the responsible unit.
ROUTE_SQL = f"""
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), {STORAGE_SRID}) AS geom)
SELECT g.bgcode, g.district_code,
       coalesce((SELECT r.responsible_unit_id FROM city.responsible_grid r, p
                 WHERE ST_Intersects(r.geom, p.geom) ORDER BY r.code LIMIT 1),
                g.responsible_unit_id) AS responsible_unit_id
FROM p LEFT JOIN city.unit_grid g ON ST_Intersects(g.geom, p.geom)
ORDER BY g.bgcode LIMIT 1
"""

OPEN_SQL = f"""
WITH n AS (SELECT nextval(pg_get_serial_sequence('city.case_file', 'id')) AS id),
     c AS (SELECT coalesce((SELECT time_limit_hours FROM city.event_class WHERE code = %(event_class_code)s), 24) AS hours)
INSERT INTO city.case_file AS f (id, case_no, kind, component_class_code, event_class_code, objcode, district_code,
                                 bgcode, address, description, source, state, reported_at, deadline_at, geom)
SELECT n.id, to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYY') || lpad(n.id::text, 10, '0'),
       %(kind)s, %(component_class_code)s, %(event_class_code)s, %(objcode)s, %(district_code)s, %(bgcode)s,
       %(address)s, %(description)s, %(source)s, 'reported', now(), now() + make_interval(hours => c.hours),
       ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), {STORAGE_SRID})
FROM n, c
RETURNING f.id, f.case_no, f.kind, f.state, f.district_code, f.bgcode, f.source, f.reported_at, f.deadline_at
"""

EVENT_SQL = "INSERT INTO city.case_event (case_id, state, actor, note) VALUES (%s, %s, %s, %s)"


async def route(conn: psycopg.AsyncConnection, lon: float, lat: float) -> dict:
    """{bgcode, district_code, responsible_unit_id} of a CGCS2000 point; InvalidInput outside every grid."""
    row = await (await conn.execute(ROUTE_SQL, {"lon": lon, "lat": lat})).fetchone()
    if row is None or row["bgcode"] is None:
        raise InvalidInput(f"the location {lon:.6f}, {lat:.6f} lies in no unit grid of the city")
    return row


async def open_case(conn: psycopg.AsyncConnection, *, source: CaseSource, lon: float, lat: float,
                    event_class_code: str | None = None, component_class_code: str | None = None,
                    objcode: str | None = None, description: str | None = None, address: str | None = None,
                    actor: str | None = None) -> dict:
    """Open a case at a CGCS2000 point in state 'reported' (信息采集), routed by its grid, with its
    first `case_event`. Runs in the caller's transaction (or its own). Returns the case row plus
    `responsible_unit_id`."""
    if source not in SOURCES:
        raise InvalidInput(f"unknown case source {source!r}; sources are {', '.join(SOURCES)}")
    if (event_class_code is None) == (component_class_code is None):
        raise InvalidInput("a case has either an event class or a component class")
    async with conn.transaction():
        where = await route(conn, lon, lat)
        row = await (await conn.execute(OPEN_SQL, {
            "kind": "event" if event_class_code else "component", "event_class_code": event_class_code,
            "component_class_code": component_class_code, "objcode": objcode,
            "district_code": where["district_code"], "bgcode": where["bgcode"], "address": address,
            "description": description, "source": source, "lon": lon, "lat": lat})).fetchone()
        await conn.execute(EVENT_SQL, [row["id"], "reported", actor, description])
    return {**row, "responsible_unit_id": where["responsible_unit_id"]}
