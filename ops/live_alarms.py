"""Open manhole alarms as one GeoJSON FeatureCollection: the wall's live alarm layer, refetched
whenever the change feed reports a write to city.alarm (there are tens to hundreds open at once)."""

from __future__ import annotations

import psycopg

OPEN_ALARMS_SQL = """
SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(json_build_object(
    'type', 'Feature', 'id', a.id,
    'geometry', ST_AsGeoJSON(a.geom, 6, 0)::json,
    'properties', json_build_object(
        'id', a.id, 'objcode', a.objcode, 'objname', c.objname, 'alarm_type', a.alarm_type,
        'severity', a.severity, 'status', a.status, 'raised_at', a.raised_at,
        'district_code', a.district_code, 'bgcode', c.bgcode)
) ORDER BY a.raised_at DESC), '[]')) AS collection
FROM city.alarm a JOIN city.component c USING (objcode)
WHERE a.status <> 'cleared' AND a.raised_at >= city.open_alarms_since()
"""


async def open_alarms(conn: psycopg.AsyncConnection) -> dict:
    return (await (await conn.execute(OPEN_ALARMS_SQL)).fetchone())["collection"]
