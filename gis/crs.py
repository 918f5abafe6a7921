"""The coordinate reference systems the platform serves (OGC API Features Part 2).

A CRS is named by its OGC URI. Axis order follows the CRS definition, as OGC requires: EPSG:4326,
EPSG:4490 and the CGCS2000 Gauss-Krüger zones list northing (latitude) first, CRS84 and
EPSG:3857 easting first. pyproj's EPSG database decides which, so nothing here is hand-typed
per CRS; PostGIS always works in x/y (east, north) order, so lat-first coordinates are swapped
at the edge.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

from gis.errors import InvalidInput

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{}"
STORAGE_SRID = 4490
# CGCS2000 geographic, its Gauss-Krüger zones CM 117°E / 120°E (Suqian straddles both), WGS 84, Web Mercator
SERVED_EPSG = (4490, 4548, 4549, 4326, 3857)
_EPSG_FORMS = re.compile(r"^(?:https?://www\.opengis\.net/def/crs/EPSG/0/|\[?EPSG:)(\d+)\]?$", re.IGNORECASE)


@dataclass(frozen=True)
class ServedCrs:
    uri: str
    srid: int  # the PostGIS SRID; CRS84 is SRID 4326 with x/y order
    lat_first: bool  # the CRS lists northing before easting
    geographic: bool

    def to_xy(self, coords: tuple[float, ...]) -> tuple[float, ...]:
        """Coordinates given in this CRS's axis order, as x/y pairs (east first)."""
        if not self.lat_first:
            return coords
        return tuple(v for i in range(0, len(coords), 2) for v in (coords[i + 1], coords[i]))


@lru_cache
def _epsg(code: int) -> ServedCrs:
    definition = CRS.from_epsg(code)
    first_axis = definition.axis_info[0].direction.lower()
    return ServedCrs(EPSG_URI.format(code), code, first_axis in ("north", "south"), definition.is_geographic)


CRS84 = ServedCrs(CRS84_URI, 4326, lat_first=False, geographic=True)
STORAGE_CRS = _epsg(STORAGE_SRID)


def served_crs() -> list[ServedCrs]:
    return [CRS84, *(_epsg(code) for code in SERVED_EPSG)]


def served_uris() -> list[str]:
    return [crs.uri for crs in served_crs()]


def parse_crs(value: str | None, *, parameter: str = "crs") -> ServedCrs:
    """The served CRS a request names (default CRS84), or InvalidInput listing the served ones."""
    if value is None or value.strip() in ("", CRS84_URI, "[OGC:CRS84]", "OGC:CRS84"):
        return CRS84
    match = _EPSG_FORMS.match(value.strip().strip("<>"))
    if match and int(match.group(1)) in SERVED_EPSG:
        return _epsg(int(match.group(1)))
    raise InvalidInput(f"{parameter} {value!r} is not served; use one of: {', '.join(served_uris())}")


def parse_bbox(value: str, crs: ServedCrs) -> list[tuple[float, float, float, float]]:
    """A `bbox` parameter as x/y boxes in crs (two boxes when a geographic bbox crosses the antimeridian).

    4 numbers, or 6 with heights (ignored, the city is 2D); in the CRS's own axis order.
    """
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise InvalidInput(f"bbox {value!r} must be comma-separated numbers") from None
    if len(numbers) == 6:
        numbers = (numbers[0], numbers[1], numbers[3], numbers[4])
    if len(numbers) != 4:
        raise InvalidInput(f"bbox has {len(numbers)} numbers; it takes 4 (or 6 with heights)")
    if not all(math.isfinite(n) for n in numbers):
        raise InvalidInput("bbox numbers must be finite")
    minx, miny, maxx, maxy = crs.to_xy(numbers)
    if miny > maxy:
        raise InvalidInput(f"bbox lower bound {miny} is above its upper bound {maxy}")
    if crs.geographic:
        if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
            raise InvalidInput("bbox longitudes must lie in -180…180 and latitudes in -90…90")
        if minx > maxx:  # crosses the antimeridian: the part east of minx and the part west of maxx
            return [(minx, miny, 180.0, maxy), (-180.0, miny, maxx, maxy)]
    elif minx > maxx:
        raise InvalidInput(f"bbox minimum easting {minx} exceeds its maximum {maxx}")
    else:
        return [_within_domain(crs, (minx, miny, maxx, maxy))]
    return [(minx, miny, maxx, maxy)]


def _within_domain(crs: ServedCrs, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A projected bbox clipped to where its projection is defined: PostGIS cannot transform a
    Gauss-Krüger envelope of ±1e300 metres, and no feature lies outside that domain anyway."""
    dminx, dminy, dmaxx, dmaxy = projected_domain(crs.srid)
    minx, miny, maxx, maxy = max(box[0], dminx), max(box[1], dminy), min(box[2], dmaxx), min(box[3], dmaxy)
    if minx > maxx or miny > maxy:
        raise InvalidInput(f"bbox lies outside where {crs.uri} is defined "
                           f"(x {dminx:.0f}…{dmaxx:.0f}, y {dminy:.0f}…{dmaxy:.0f})")
    return minx, miny, maxx, maxy


@lru_cache
def projected_domain(srid: int) -> tuple[float, float, float, float]:
    """x/y bounds of a projected CRS: its EPSG area of use widened by 3° each way (Gauss-Krüger
    stays accurate well past its zone edge), projected."""
    area = CRS.from_epsg(srid).area_of_use
    west, south = max(area.west - 3, -180), max(area.south - 3, -85.06)
    east, north = min(area.east + 3, 180), min(area.north + 3, 85.06)
    transformer = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(srid), always_xy=True)
    return transformer.transform_bounds(west, south, east, north, densify_pts=21)


LINEAR_TYPES = (1, 2)  # LineString, LinearRing (shapely type ids)


def check_edges(geometry: shapely.Geometry) -> None:
    """A longitude, latitude geometry whose line or ring edge goes 180° or more east or west has no one
    shortest path on the sphere: PostGIS's geography (geodesic distances, areas) refuses it with an
    internal error."""
    parts = shapely.get_parts(shapely.get_parts(geometry))  # multi-parts, and those of a collection
    kinds = shapely.get_type_id(parts)
    linear = np.concatenate([shapely.get_rings(parts[kinds == 3]), parts[np.isin(kinds, LINEAR_TYPES)]])
    if not len(linear):
        return
    coordinates, owner = shapely.get_coordinates(linear, return_index=True)
    jumps = np.abs(np.diff(coordinates[:, 0])) >= 180
    if np.any(jumps & (owner[1:] == owner[:-1])):
        raise InvalidInput("an edge of the geometry spans 180° of longitude or more: on the sphere it has no one "
                           "shortest path; split the edge")
