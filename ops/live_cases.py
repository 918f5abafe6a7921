"""Overdue cases as one GeoJSON FeatureCollection, the most recently late first: the wall's blinking layer, refetched whenever the
change feed reports a write to city.case_file (the 督办 sweep writes each case as it passes its
deadline, so a case turning overdue is such a write)."""

from __future__ import annotations

import psycopg

OVERDUE_SQL = """
SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(json_build_object(
    'type', 'Feature', 'id', c.id,
    'geometry', ST_AsGeoJSON(c.geom, 6, 0)::json,
    'properties', json_build_object(
        'id', c.id, 'case_no', c.case_no, 'state', c.state, 'class_name', coalesce(ec.name, c.component_class_code),
        'deadline_at', c.deadline_at, 'district_code', c.district_code, 'bgcode', c.bgcode,
        'unit', u.name, 'department', u.department)
) ORDER BY c.deadline_at DESC), '[]')) AS collection
FROM city.case_file c
LEFT JOIN city.event_class ec ON ec.code = c.event_class_code
LEFT JOIN city.responsible_unit u ON u.id = c.responsible_unit_id
WHERE c.state IN ('dispatched', 'processing') AND c.deadline_at <= now()
"""


async def overdue_cases(conn: psycopg.AsyncConnection) -> dict:
    return (await (await conn.execute(OVERDUE_SQL)).fetchone())["collection"]
