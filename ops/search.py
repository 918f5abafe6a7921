"""Find a place on the wall: a component by its 16-digit code (GB/T 30428.2), a unit grid by its
15-digit code (GB/T 30428.1), or a district / street / community by (part of) its name or code.
Each hit carries a bbox (lon/lat) the map can fly to."""

from __future__ import annotations

import re

import psycopg

from gis.errors import InvalidInput, NotFound

MAX_HITS = 10

_BBOX = "json_build_array(ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)) AS bbox"

COMPONENT_SQL = f"""
SELECT 'component' AS kind, objcode AS code, objname AS name, class_code AS detail, {_BBOX}
FROM city.component, LATERAL (SELECT ST_Expand(Box2D(geom), 0.0005) AS b) e
WHERE objcode = %(q)s
"""

GRID_SQL = f"""
SELECT 'unit_grid' AS kind, g.bgcode AS code, coalesce(g.name, c.name || ' ' || right(g.bgcode, 3)) AS name,
       c.name AS detail, {_BBOX}
FROM city.unit_grid g JOIN city.community c ON c.code = g.community_code, LATERAL (SELECT Box2D(g.geom) AS b) e
WHERE g.bgcode = %(q)s
"""

PLACE_SQL = f"""
SELECT kind, code, name, detail, {_BBOX} FROM (
    SELECT 'district' AS kind, code::text, name, kind AS detail, Box2D(geom) AS b, 0 AS rank FROM city.district
    UNION ALL
    SELECT 'street', s.code::text, s.name, d.name, Box2D(s.geom), 1
      FROM city.street s JOIN city.district d ON d.code = s.district_code
    UNION ALL
    SELECT 'community', c.code::text, c.name, s.name, Box2D(c.geom), 2
      FROM city.community c JOIN city.street s ON s.code = c.street_code
) places
WHERE name LIKE %(pattern)s OR code LIKE %(prefix)s
ORDER BY rank, length(name), code
LIMIT %(limit)s
"""

GRID_DETAIL_SQL = """
SELECT g.bgcode, g.name, g.land_use, g.area_m2,
       c.code AS community_code, c.name AS community_name,
       s.code AS street_code, s.name AS street_name,
       d.code AS district_code, d.name AS district_name,
       u.code AS responsible_unit_code, u.name AS responsible_unit_name,
       u.department AS responsible_department, u.phone AS responsible_phone
FROM city.unit_grid g
JOIN city.community c ON c.code = g.community_code
JOIN city.street s ON s.code = c.street_code
JOIN city.district d ON d.code = g.district_code
LEFT JOIN city.responsible_unit u ON u.id = g.responsible_unit_id
WHERE g.bgcode = %s
"""


def _like_escape(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text)


async def search(conn: psycopg.AsyncConnection, q: str) -> list[dict]:
    q = q.strip()
    if not q:
        raise InvalidInput("q must not be empty: give a 16-digit component code, a 15-digit grid code or a place name")
    if re.fullmatch(r"[0-9]{16}", q):
        statement = COMPONENT_SQL
    elif re.fullmatch(r"[0-9]{15}", q):
        statement = GRID_SQL
    else:
        statement = PLACE_SQL
    escaped = _like_escape(q)
    params = {"q": q, "pattern": f"%{escaped}%", "prefix": f"{escaped}%", "limit": MAX_HITS}
    return await (await conn.execute(statement, params)).fetchall()


async def describe_grid(conn: psycopg.AsyncConnection, bgcode: str) -> dict:
    """A unit grid with its community, street, district and responsible unit (责任单位)."""
    row = await (await conn.execute(GRID_DETAIL_SQL, [bgcode])).fetchone()
    if row is None:
        raise NotFound(f"no unit grid with code {bgcode!r}")
    return row
