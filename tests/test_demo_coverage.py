"""Routing needs complete coverage: the demo's districts tile the municipality (no gap along the
canal, no overlap), so every point lies in exactly one district."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import Polygon

from gis.db import open_connection
from layers.demo.plan import MUNICIPAL_OUTLINE, county_polygons, plan_city


def test_districts_tile_the_municipality_without_gaps_or_overlaps():
    districts = county_polygons(plan_city())
    outline = Polygon(MUNICIPAL_OUTLINE)
    union = shapely.union_all(list(districts.values()))
    assert outline.difference(union).area < 1e-12 * outline.area
    assert sum(d.area for d in districts.values()) - union.area < 1e-12 * outline.area
    # points drawn at random over the outline (a seed never tuned on) lie in exactly one district
    rng = np.random.default_rng(97)
    minx, miny, maxx, maxy = outline.bounds
    points = shapely.points(rng.uniform(minx, maxx, 20_000), rng.uniform(miny, maxy, 20_000))
    inside = points[shapely.contains(outline, points)]
    hits = sum(shapely.intersects(d, inside).astype(int) for d in districts.values())
    assert len(inside) > 5_000 and (hits == 1).all()


def test_the_canal_lies_in_exactly_one_district_at_every_point(city_db):
    with open_connection(city_db) as conn:
        rows = conn.execute("""
            WITH p AS (SELECT (ST_Dump(ST_GeneratePoints(w.geom, 300, 7))).geom AS geom FROM city.water w WHERE w.name = '京杭大运河')
            SELECT (SELECT count(*) FROM city.district d WHERE ST_Intersects(d.geom, p.geom)) AS n FROM p""").fetchall()
    assert len(rows) == 300 and {r["n"] for r in rows} == {1}
