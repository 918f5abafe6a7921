"""The city as the wall frames it: the bbox of its districts (lon/lat), fitted on start, and a label
point inside each district for the wall's district names."""

from __future__ import annotations

import psycopg

from gis.errors import NotFound

CITY_FRAME_SQL = """
SELECT json_build_array(ST_XMin(e.b), ST_YMin(e.b), ST_XMax(e.b), ST_YMax(e.b)) AS bbox,
       (SELECT json_agg(json_build_object('code', code, 'name', name,
                        'label_point', json_build_array(ST_X(p), ST_Y(p))) ORDER BY code)
          FROM city.district, LATERAL (SELECT ST_PointOnSurface(geom) AS p) s) AS districts
FROM (SELECT ST_Extent(geom) AS b FROM city.district) e
WHERE e.b IS NOT NULL
"""


async def city_frame(conn: psycopg.AsyncConnection) -> dict:
    row = await (await conn.execute(CITY_FRAME_SQL)).fetchone()
    if row is None:
        raise NotFound("the city has no districts yet: load data first (cityops demo)")
    return row
