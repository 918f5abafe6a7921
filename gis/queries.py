"""The planners' spatial questions, each one parameterised SQL statement.

Distances and areas are true metres: geography on the CGCS2000 ellipsoid for distances, the
Gauss-Krüger zone CM 117°E (EPSG:4548, scale error < 0.05 % across Suqian) for buffers and
areas. Index use: a degree box around the query (`&&`) first, then the exact metric test.
Layers and filters come from the catalogue and `layers.features.select`, so the same CQL2 a
map sends to /items narrows a query.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
import shapely
from psycopg import sql

from gis.errors import InvalidInput

METRIC_SRID = 4548
MAX_POINTS = 100_000
MAX_DISTANCE_M = 50_000
Zone = Literal["grid", "community", "street", "district"]
ZONES: dict[str, tuple[str, str]] = {  # zone → (table, code column)
    "grid": ("unit_grid", "bgcode"), "community": ("community", "code"),
    "street": ("street", "code"), "district": ("district", "code"),
}
METRES_PER_DEGREE_LAT = 110_574.0


def degrees_for(metres: float, latitude: float = 35.0) -> float:
    """A degree margin at least `metres` wide in both directions north of the equator up to `latitude`."""
    return metres / (111_320.0 * math.cos(math.radians(latitude)))


def check_distance(metres: float) -> float:
    if not 0 <= metres <= MAX_DISTANCE_M:
        raise InvalidInput(f"distance must be between 0 and {MAX_DISTANCE_M:,} m, got {metres}")
    return metres


def check_points(lons: Sequence[float], lats: Sequence[float]) -> None:
    if len(lons) != len(lats) or not lons:
        raise InvalidInput("send one or more points, each a longitude and a latitude")
    if len(lons) > MAX_POINTS:
        raise InvalidInput(f"at most {MAX_POINTS:,} points per request, got {len(lons):,}")
    if not all(-180 <= x <= 180 for x in lons) or not all(-90 <= y <= 90 for y in lats):
        raise InvalidInput("points are longitude, latitude in degrees (CRS84)")


def points_from_csv(text: str) -> tuple[list[float], list[float]]:
    """Longitudes and latitudes from CSV lines `lon,lat` (a header line is skipped)."""
    lons, lats = [], []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (number == 1 and not row[0].strip().lstrip("-").replace(".", "", 1).isdigit()):
            continue
        try:
            lons.append(float(row[0]))
            lats.append(float(row[1]))
        except (ValueError, IndexError):
            raise InvalidInput(f"CSV line {number}: expected lon,lat") from None
    return lons, lats


# -- which grid, community, street, district and responsible unit hold a point -------------

LOCATE_SQL = """
WITH p AS MATERIALIZED (
    SELECT ord, ST_SetSRID(ST_MakePoint(x, y), 4490) AS g
    FROM unnest(%(lons)b::float8[], %(lats)b::float8[]) WITH ORDINALITY AS u(x, y, ord)
), hit AS MATERIALIZED (  -- a point on a shared edge lies in two grids: keep the lower code
    SELECT DISTINCT ON (p.ord) p.ord, p.g, u.bgcode, u.responsible_unit_id
    FROM p LEFT JOIN city.unit_grid u ON ST_Intersects(u.geom, p.g)
    ORDER BY p.ord, u.bgcode
), outside AS MATERIALIZED (
    -- outside the gridded urban area the district still holds the point; districts on the outer
    -- side of the loop, so each large polygon is tested many times in a row (PostGIS prepares it)
    SELECT DISTINCT ON (m.ord) m.ord, d.code, d.name
    FROM city.district d CROSS JOIN LATERAL (
        SELECT ord FROM hit WHERE hit.bgcode IS NULL AND ST_Intersects(d.geom, hit.g)) m
    ORDER BY m.ord, d.code
)
SELECT hit.ord::int AS ord, hit.bgcode, c.code AS community_code, c.name AS community_name,
       s.code AS street_code, s.name AS street_name, coalesce(d.code, outside.code) AS district_code,
       coalesce(d.name, outside.name) AS district_name, r.code AS responsible_unit_code, r.name AS responsible_unit_name
FROM hit
LEFT JOIN city.community c ON c.code = left(hit.bgcode, 12)
LEFT JOIN city.street s ON s.code = left(hit.bgcode, 9)
LEFT JOIN city.district d ON d.code = left(hit.bgcode, 6)
LEFT JOIN city.responsible_unit r ON r.id = hit.responsible_unit_id
LEFT JOIN outside ON outside.ord = hit.ord
ORDER BY hit.ord
"""


async def locate(conn: psycopg.AsyncConnection, lons: Sequence[float], lats: Sequence[float]) -> list[dict]:
    """One row per point, in the order given: one set-wise join, however many points."""
    check_points(lons, lats)
    rows = await (await conn.execute(LOCATE_SQL, {"lons": list(lons), "lats": list(lats)})).fetchall()
    return [{"lon": lons[row["ord"] - 1], "lat": lats[row["ord"] - 1], **{k: v for k, v in row.items() if k != "ord"}}
            for row in rows]


# -- within a distance, nearest --------------------------------------------------------------

def query_geometry(geojson: dict | None = None, *, lon: float | None = None, lat: float | None = None) -> bytes:
    """A CRS84 geometry (GeoJSON, or a point) as WKB, checked."""
    if geojson is not None:
        try:
            geometry = shapely.geometry.shape(geojson)
        except Exception as exc:  # shapely reports malformed GeoJSON with several exception types
            raise InvalidInput(f"the geometry is not valid GeoJSON: {exc}") from None
    elif lon is not None and lat is not None:
        check_points([lon], [lat])
        geometry = shapely.Point(lon, lat)
    else:
        raise InvalidInput("give a point (lon, lat) or a GeoJSON geometry")
    if geometry.is_empty or not geometry.is_valid:
        raise InvalidInput(f"the geometry is invalid: {shapely.is_valid_reason(geometry)}")
    return shapely.to_wkb(geometry)


def within_query(relation: sql.Composable, key: str, where: sql.Composable) -> sql.Composable:
    return sql.SQL("""
WITH q AS (SELECT ST_SetSRID(ST_GeomFromWKB(%(wkb)s), 4490) AS g)
SELECT t.{key}::text AS id, ST_Distance(t.geom::geography, q.g::geography) AS distance_m
FROM {rel} t, q
WHERE t.geom && ST_Expand(q.g, %(margin)s) AND ST_DWithin(t.geom::geography, q.g::geography, %(metres)s) AND {where}
ORDER BY distance_m, t.{key}
LIMIT %(limit)s""").format(key=sql.Identifier(key), rel=relation, where=where)


def nearest_query(relation: sql.Composable, key: str, where: sql.Composable) -> sql.Composable:
    """KNN on the Web Mercator index (conformal, so its order is the true order nearby), with
    candidates to spare; then exact geodesic metres decide."""
    return sql.SQL("""
WITH q AS (SELECT ST_SetSRID(ST_GeomFromWKB(%(wkb)s), 4490) AS g),
candidates AS (
    SELECT t.{key} AS fid, t.geom FROM {rel} t, q WHERE {where}
    ORDER BY t.geom_3857 <-> ST_Transform(q.g, 3857) LIMIT %(candidates)s
)
SELECT c.fid::text AS id, ST_Distance(c.geom::geography, q.g::geography) AS distance_m
FROM candidates c, q ORDER BY distance_m, c.fid LIMIT %(n)s""").format(key=sql.Identifier(key), rel=relation, where=where)


# -- counts and densities per zone ------------------------------------------------------------

def density_query(zone: Zone, relation: sql.Composable, where: sql.Composable, *, district: bool) -> sql.Composable:
    table, code = ZONES[zone]
    return sql.SQL("""
SELECT z.{code}::text AS code, coalesce(z.name, z.{code}::text) AS name, z.area_m2, count(t.*)::int AS count,
       count(t.*) / (z.area_m2 / 1e6) AS per_km2, ST_AsGeoJSON(z.geom, 7, 0) AS geometry
FROM city.{table} z LEFT JOIN {rel} t ON ST_Intersects(z.geom, t.geom) AND {where}
WHERE {district_filter}
GROUP BY z.{code}
ORDER BY z.{code}""").format(
        code=sql.Identifier(code), table=sql.Identifier(table), rel=relation, where=where,
        district_filter=sql.SQL("left(z.{}::text, 6) = %(district)s").format(sql.Identifier(code)) if district else sql.SQL("TRUE"))


def class_breaks(values: Sequence[float], classes: int = 5) -> list[float]:
    """Quantile class breaks (the upper bound of each class), distinct and ascending."""
    ordered = sorted(values)
    if not ordered:
        return []
    breaks = [ordered[min(len(ordered) - 1, math.ceil(len(ordered) * k / classes) - 1)] for k in range(1, classes + 1)]
    return sorted(set(round(b, 6) for b in breaks))


# -- coverage gaps ----------------------------------------------------------------------------

def gaps_query(relation: sql.Composable, where: sql.Composable, *, district: bool) -> sql.Composable:
    """Per unit grid: the part farther than %(metres)s from every feature, in EPSG:4548."""
    return sql.SQL("""
WITH grids AS (
    SELECT bgcode, geom, ST_Transform(geom, {srid}) AS g FROM city.unit_grid
    WHERE {district_filter} AND (%(bbox)s::float8[] IS NULL OR geom && ST_MakeEnvelope(
        (%(bbox)s::float8[])[1], (%(bbox)s::float8[])[2], (%(bbox)s::float8[])[3], (%(bbox)s::float8[])[4], 4490))
), gaps AS MATERIALIZED (  -- once per grid, not once per use; one buffer of the collected points beats a union of buffers
    SELECT bgcode, ST_Area(g) AS area_m2, ST_Difference(g, coalesce((
        SELECT ST_Buffer(ST_Collect(f), %(metres)s, 8) FROM (
            SELECT ST_Transform(t.geom, {srid}) AS f FROM {rel} t
            WHERE t.geom && ST_Expand(grids.geom, %(margin)s) AND {where}) near
        WHERE ST_DWithin(f, grids.g, %(metres)s)
    ), ST_SetSRID('POLYGON EMPTY'::geometry, {srid}))) AS gap
    FROM grids
)
SELECT bgcode, area_m2, ST_Area(gap) AS uncovered_m2, 100 * ST_Area(gap) / area_m2 AS uncovered_pct,
       CASE WHEN ST_IsEmpty(gap) THEN NULL ELSE ST_AsGeoJSON(ST_Transform(gap, 4490), 7, 0) END AS geometry
FROM gaps ORDER BY bgcode""").format(
        srid=sql.Literal(METRIC_SRID), rel=relation, where=where,
        district_filter=sql.SQL("district_code = %(district)s") if district else sql.SQL("TRUE"))


def gap_params(metres: float, district: str | None, bbox: Sequence[float] | None) -> dict[str, Any]:
    if district is None and bbox is None:
        raise InvalidInput("coverage gaps need an area: a district code or a bbox (minlon,minlat,maxlon,maxlat)")
    if bbox is not None and (len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]):
        raise InvalidInput("bbox is minlon,minlat,maxlon,maxlat with min ≤ max")
    return {"metres": check_distance(metres), "margin": degrees_for(metres), "district": district,
            "bbox": list(bbox) if bbox is not None else None}
