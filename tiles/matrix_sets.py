"""The tile matrix sets cityops serves (morecantile), and the checks on a requested tile."""

from __future__ import annotations

import morecantile
from morecantile import Tile, TileMatrixSet
from pyproj import CRS

from gis.errors import NotFound

WEB_MERCATOR_QUAD = morecantile.tms.get("WebMercatorQuad")
# OGC's geographic quad (CRS84, two tiles at level 0): clients that take a collection's CRS84
# extent as tile-matrix coordinates use it by name (GDAL's OGCAPI driver picks it when offered).
WORLD_CRS84_QUAD = morecantile.tms.get("WorldCRS84Quad")
# The geographic grid of Tianditu's "c" services on the CGCS2000 datum: two tiles at level 0.
CGCS2000_QUAD = TileMatrixSet.custom(
    [-180, -90, 180, 90], CRS.from_epsg(4490), matrix_scale=[2, 1], id="CGCS2000Quad",
    title="CGCS2000 geographic quad (天地图 c)", maxzoom=22,
)
TILE_MATRIX_SETS: dict[str, TileMatrixSet] = {tms.id: tms for tms in (WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD, CGCS2000_QUAD)}
# Registered by OGC: their definitions have a canonical URI.
OGC_REGISTERED = frozenset((WEB_MERCATOR_QUAD.id, WORLD_CRS84_QUAD.id))


def get_tms(tms_id: str) -> TileMatrixSet:
    try:
        return TILE_MATRIX_SETS[tms_id]
    except KeyError:
        raise NotFound(f"unknown tile matrix set {tms_id!r}; known: {', '.join(TILE_MATRIX_SETS)}") from None


def check_tile(tms: TileMatrixSet, z: int, row: int, col: int) -> Tile:
    """The tile at tileMatrix z, tileRow row, tileCol col, or NotFound saying which limit it breaks."""
    if not tms.minzoom <= z <= tms.maxzoom:
        raise NotFound(f"tileMatrix {z} is not in {tms.id} (levels {tms.minzoom}–{tms.maxzoom})")
    matrix = tms.matrix(z)
    if not (0 <= row < matrix.matrixHeight and 0 <= col < matrix.matrixWidth):
        raise NotFound(f"tile row {row}, col {col} is outside {tms.id} level {z} "
                       f"({matrix.matrixHeight} rows × {matrix.matrixWidth} columns)")
    return Tile(x=col, y=row, z=z)
