"""Warnings about where a file's features lie: outside the city, or shifted like GCJ-02 / BD-09 data.

These do not reject rows (the data may be right); they are measured and reported so that a wrong
coordinate system is never imported silently.
"""

from __future__ import annotations

import numpy as np
import psycopg

from gis.source_crs import bd09_to_wgs84, gcj02_to_wgs84
from gis.crs import STORAGE_SRID

SAMPLE = 300
# The median distance to the nearest existing feature, as read and if the coordinates were GCJ-02/BD-09.
NEAREST_SQL = f"""
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS median FROM (
    SELECT (SELECT min(ST_Distance(p.geom::geography, n.geom::geography)) FROM (
        (SELECT c.geom FROM city.component c ORDER BY c.geom <-> p.geom LIMIT 1)
        UNION ALL (SELECT b.geom FROM city.building b ORDER BY b.geom <-> p.geom LIMIT 1)
        UNION ALL (SELECT r.geom FROM city.road r ORDER BY r.geom <-> p.geom LIMIT 1)) n) AS d
    FROM (SELECT ST_SetSRID(ST_MakePoint(x, y), {STORAGE_SRID}) AS geom FROM unnest(%s::float8[], %s::float8[]) AS u(x, y)) p
) nearest WHERE d IS NOT NULL
"""


def outside_city(conn: psycopg.Connection) -> str | None:
    # Districts as the outer side: five polygons, each prepared once and tested against the staged
    # rows in its box (through the stage's GiST index when there is one), not one district index
    # probe per row. A row on a shared border counts once (distinct). Only rows outside the extent
    # box can be any distance from it, so the distance looks at those alone (the first 1,000).
    row = conn.execute(f"""
        WITH e AS (SELECT ST_SetSRID(ST_Extent(geom)::geometry, {STORAGE_SRID}) AS box, count(*) AS districts FROM city.district)
        SELECT (SELECT count(*) FROM import_stage WHERE reason IS NULL) AS total,
               (SELECT count(*) FROM import_stage WHERE reason IS NULL)
               - (SELECT count(DISTINCT s.ctid) FROM city.district d JOIN import_stage s ON ST_Intersects(d.geom, s.geom)
                  WHERE s.reason IS NULL) AS outside,
               (SELECT max(ST_Distance(o.geom::geography, e.box::geography)) FROM (
                    SELECT s.geom FROM import_stage s, e WHERE s.reason IS NULL AND NOT s.geom @ e.box LIMIT 1000) o) AS metres,
               e.districts
        FROM e""").fetchone()
    if not row["districts"] or not row["outside"]:
        return None
    return (f"{row['outside']:,} of {row['total']:,} features lie outside the city's districts, "
            f"up to {(row['metres'] or 0) / 1000:,.1f} km from its extent: check the coordinate system (--crs)")


def _median_nearest(conn: psycopg.Connection, x: np.ndarray, y: np.ndarray) -> float | None:
    return conn.execute(NEAREST_SQL, [x.tolist(), y.tolist()]).fetchone()["median"]


def web_offset(conn: psycopg.Connection) -> str | None:
    """Staged data declared WGS84/CGCS2000 that fits the city far better once read as GCJ-02 or BD-09."""
    # Only features near the city can be compared with it (a GCJ-02 shift is about 0.005°).
    rows = conn.execute(
        "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT ST_PointOnSurface(s.geom) AS p FROM import_stage s, "
        f"(SELECT ST_Expand(ST_SetSRID(ST_Extent(geom)::geometry, {STORAGE_SRID}), 0.05) AS box FROM city.district) e "
        "WHERE s.reason IS NULL AND s.geom && e.box ORDER BY s.src_layer, s.row_no LIMIT %s) s", [SAMPLE]).fetchall()
    if not rows:
        return None
    x, y = np.array([r["x"] for r in rows]), np.array([r["y"] for r in rows])
    as_read = _median_nearest(conn, x, y)
    if as_read is None or as_read < 3:  # already on top of known features
        return None
    for name, to_wgs84 in (("GCJ-02 (AMap/Tencent)", gcj02_to_wgs84), ("BD-09 (Baidu)", bd09_to_wgs84)):
        cx, cy = to_wgs84(x, y)
        if_offset = _median_nearest(conn, cx, cy)
        if if_offset is not None and if_offset < as_read / 3:
            shift = float(np.median(np.hypot((cx - x) * 111_320 * np.cos(np.radians(y)), (cy - y) * 110_574)))
            key = "gcj02" if name.startswith("GCJ") else "bd09"
            return (f"the coordinates look like {name}, not WGS84/CGCS2000: features lie a median {as_read:,.0f} m "
                    f"from the city's existing features as declared, {if_offset:,.1f} m if read as {name} "
                    f"(a systematic shift of {shift:,.0f} m); re-import with --crs {key}")
    return None
