"""Unit grid (bgcode) and outside-city figures of an import, looked up set-wise, agree row by row
with the plain per-row definition: the lowest-numbered grid of the component's county it touches."""

from __future__ import annotations

import json

from gis.db import open_connection
from layers.importer import ImportOptions, import_file

# Grid corners (shared by up to four grids: the lowest bgcode must win), grid interiors, and two
# points far outside the city.
POINTS_SQL = """
SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (
    SELECT ST_StartPoint(ST_ExteriorRing(ST_GeometryN(geom, 1))) AS p FROM city.unit_grid WHERE bgcode LIKE %(county)s || '%%'
    UNION ALL SELECT ST_PointOnSurface(geom) FROM city.unit_grid WHERE bgcode LIKE %(county)s || '%%'
    UNION ALL SELECT ST_PointOnSurface(geom) FROM city.unit_grid WHERE bgcode NOT LIKE %(county)s || '%%') g
ORDER BY x, y
"""
ORACLE_SQL = """
SELECT count(*) AS n, count(*) FILTER (WHERE c.bgcode IS DISTINCT FROM (
    SELECT g.bgcode FROM city.unit_grid g WHERE g.district_code = c.district_code AND ST_Intersects(g.geom, c.geom)
    ORDER BY g.bgcode LIMIT 1)) AS wrong,
    count(c.bgcode) AS with_grid
FROM city.component c WHERE c.attrs->>'probe' = 'grid test'
"""


def test_bgcode_is_the_lowest_grid_of_the_county_and_outside_is_counted_exactly(city_db, tmp_path):
    county = "321302"
    with open_connection(city_db) as conn:
        rows = conn.execute(POINTS_SQL, {"county": county}).fetchall()
        points = [(r["x"], r["y"]) for r in rows][::7] + [(100.0, 30.0), (101.0, 31.0)]
        path = tmp_path / "probes.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"objname": f"probe {i}", "probe": "grid test"},
             "geometry": {"type": "Point", "coordinates": list(p)}} for i, p in enumerate(points)]}), encoding="utf-8")
        report = import_file(conn, path, ImportOptions(layer="city_furniture", class_code="0305", district=county))
        assert report.rejected == 0 and report.inserted["city_furniture"] == len(points)
        found = conn.execute(ORACLE_SQL).fetchone()
        assert found["n"] == len(points) and found["wrong"] == 0
        assert 0 < found["with_grid"] < len(points)  # points in other counties' grids get none
        assert any(w.startswith(f"2 of {len(points):,} features lie outside") for w in report.warnings), report.warnings
        conn.rollback()
