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

import numpy as np
import orjson
import psycopg
import shapely
from psycopg import sql

from gis.errors import InvalidInput
from gis.crs import STORAGE_SRID, check_edges
from gis.grid_index import GridIndex

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
    x, y = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
    if len(x) != len(y) or not len(x):
        raise InvalidInput("send one or more points, each a longitude and a latitude")
    if len(x) > MAX_POINTS:
        raise InvalidInput(f"at most {MAX_POINTS:,} points per request, got {len(x):,}")
    if not (np.all(np.abs(x) <= 180) and np.all(np.abs(y) <= 90)):
        raise InvalidInput("points are longitude, latitude in degrees (CRS84)")


def points_from_json(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """`{"points": [[lon, lat], …]}` parsed straight into arrays (a model per point costs more than the query)."""
    try:
        points = np.asarray(orjson.loads(body)["points"], dtype=float)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise InvalidInput('body must be {"points": [[lon, lat], …]} with numbers') from None
    if points.ndim != 2 or (len(points) and points.shape[1] != 2):
        raise InvalidInput('body must be {"points": [[lon, lat], …]}: each point is [lon, lat]')
    return (points[:, 0], points[:, 1]) if len(points) else (points, points)


def points_from_csv(text: str) -> tuple[np.ndarray, np.ndarray]:
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
    return np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)


# -- which grid, community, street, district and responsible unit hold a point -------------

async def locate(conn: psycopg.AsyncConnection, lons: Sequence[float], lats: Sequence[float],
                 index: GridIndex | None = None) -> list[dict]:
    """Row i answers point i (grid, community, street, district, responsible unit), from the
    in-memory grid index (gis.grid_index)."""
    check_points(lons, lats)
    index = index or await GridIndex.load(conn)
    return index.locate(lons, lats)


def with_coordinates(lons: Sequence[float], lats: Sequence[float], rows: list[dict]) -> list[dict]:
    """Rows that carry their point, for tables read on their own (CSV, the command line)."""
    return [{"lon": x, "lat": y, **row} for x, y, row in zip(np.asarray(lons).tolist(), np.asarray(lats).tolist(), rows)]


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
    coordinates = shapely.get_coordinates(geometry)
    check_points(coordinates[:, 0], coordinates[:, 1])  # the geodesic distance would wrap lon 500 to 140
    check_edges(geometry)
    return shapely.to_wkb(geometry)




def within_query(relation: sql.Composable, key: str, where: sql.Composable) -> sql.Composable:
    return sql.SQL("""
WITH q AS (SELECT ST_SetSRID(ST_GeomFromWKB(%(wkb)s), {storage}) AS g)
SELECT t.{key}::text AS id, ST_Distance(t.geom::geography, q.g::geography) AS distance_m
FROM {rel} t, q
WHERE t.geom && ST_Expand(q.g, %(margin)s) AND ST_DWithin(t.geom::geography, q.g::geography, %(metres)s) AND {where}
ORDER BY distance_m, t.{key}
LIMIT %(limit)s""").format(key=sql.Identifier(key), rel=relation, where=where, storage=sql.Literal(STORAGE_SRID))


def nearest_query(relation: sql.Composable, key: str, where: sql.Composable) -> sql.Composable:
    """KNN on the Web Mercator index (conformal, so its order is the true order nearby), with
    candidates to spare; then exact geodesic metres decide."""
    return sql.SQL("""
WITH q AS (SELECT ST_SetSRID(ST_GeomFromWKB(%(wkb)s), {storage}) AS g),
candidates AS (
    SELECT t.{key} AS fid, t.geom FROM {rel} t, q WHERE {where}
    ORDER BY t.geom_3857 <-> ST_Transform(q.g, 3857) LIMIT %(candidates)s
)
SELECT c.fid::text AS id, ST_Distance(c.geom::geography, q.g::geography) AS distance_m
FROM candidates c, q ORDER BY distance_m, c.fid LIMIT %(n)s""").format(key=sql.Identifier(key), rel=relation, where=where,
                                                                     storage=sql.Literal(STORAGE_SRID))


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
        (%(bbox)s::float8[])[1], (%(bbox)s::float8[])[2], (%(bbox)s::float8[])[3], (%(bbox)s::float8[])[4], {storage}))
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
       CASE WHEN ST_IsEmpty(gap) THEN NULL ELSE ST_AsGeoJSON(ST_Transform(gap, {storage}), 7, 0) END AS geometry
FROM gaps ORDER BY bgcode""").format(
        srid=sql.Literal(METRIC_SRID), storage=sql.Literal(STORAGE_SRID), rel=relation, where=where,
        district_filter=sql.SQL("district_code = %(district)s") if district else sql.SQL("TRUE"))


def gap_params(metres: float, district: str | None, bbox: Sequence[float] | None) -> dict[str, Any]:
    if district is None and bbox is None:
        raise InvalidInput("coverage gaps need an area: a district code or a bbox (minlon,minlat,maxlon,maxlat)")
    if bbox is not None and (len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]):
        raise InvalidInput("bbox is minlon,minlat,maxlon,maxlat with min ≤ max")
    return {"metres": check_distance(metres), "margin": degrees_for(metres), "district": district,
            "bbox": list(bbox) if bbox is not None else None}
