"""The orthophoto catalogue as the wall needs it: which rasters exist, where, and of what kind."""

from __future__ import annotations

import psycopg

LIST_SQL = """
SELECT id, name, kind, captured_on, gsd_m,
       json_build_array(ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom)) AS bbox
FROM city.orthophoto
ORDER BY captured_on DESC NULLS LAST, id DESC
"""


async def list_orthophotos(conn: psycopg.AsyncConnection) -> list[dict]:
    return await (await conn.execute(LIST_SQL)).fetchall()
