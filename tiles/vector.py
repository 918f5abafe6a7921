"""Mapbox Vector Tiles built by PostGIS: one SQL statement per tile, whatever the number of layers.

Each layer is `ST_AsMVT` over `ST_AsMVTGeom` rows; a dataset tile joins the layers' tiles with
`||` (an MVT is a concatenation of layers). Rows are found with the stored geometry in the tile
matrix set's CRS and its GiST index (`geom_3857 && ST_TileEnvelope(z, x, y, margin)` for
WebMercatorQuad, `geom && envelope` for the geographic CGCS2000Quad and WorldCRS84Quad): no row is
reprojected per request.

What a layer holds depends on the zoom: its features (lines and polygons simplified at half a
screen pixel, at most `tile_feature_budget` of them; the key and the declared properties from
`detail_minzoom`, below it the key and only the properties the style reads) from its minzoom to
its maxzoom, or, for a polygon layer below its `linework_below`, its boundaries as lines (each
shared edge once, straight runs merged); below its minzoom, if it has a `lowzoom`, counts
clustered on an 8 × 8 grid per tile, from the precomputed per-grid counts (`count_per_grid`) or,
when a filter is applied or for `cluster` layers, from the rows themselves; otherwise nothing.

The SQL text depends only on the layers, the zoom band and the filter's shape — z/x/y and sizes
are bound parameters — so psycopg prepares it after a few tiles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg
from morecantile import Tile, TileMatrixSet
from psycopg import sql
from psycopg.types.numeric import Int4

from gis.cql import CompiledFilter
from gis.crs import STORAGE_SRID
from gis.errors import InvalidInput
from layers.catalogue import Layer
from tiles.matrix_sets import CGCS2000_QUAD, WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD

EXTENT = 4096
BUFFER = 64
CLUSTER_CELLS = 8       # clusters per tile side below a layer's minzoom: one per 64 pixels
SIMPLIFY_CELLS = 512    # tolerance = tile width / 512 = half a pixel of a 256-pixel tile
GRID_COUNTS = sql.Identifier("city", "grid_count")


@dataclass(frozen=True)
class Grid:
    """How tiles of one tile matrix set find and clip rows."""

    tms: TileMatrixSet
    srid: int
    geom_column: str
    envelope: sql.Composable
    query_envelope: sql.Composable   # the envelope grown by the tile buffer

    def params(self, tile: Tile) -> dict:
        bounds = self.tms.xy_bounds(tile)
        width = bounds.right - bounds.left
        return {
            "z": Int4(tile.z), "x": Int4(tile.x), "y": Int4(tile.y), "margin": BUFFER / EXTENT,
            "west": bounds.left, "south": bounds.bottom, "east": bounds.right, "north": bounds.top,
            "pad": width * BUFFER / EXTENT, "tolerance": width / SIMPLIFY_CELLS, "cell": width / CLUSTER_CELLS,
            "quantum": width / EXTENT,
        }


_MAKE_ENVELOPE = sql.SQL("ST_MakeEnvelope(%(west)s, %(south)s, %(east)s, %(north)s, {})").format(sql.Literal(STORAGE_SRID))


def _geographic_grid(tms: TileMatrixSet) -> Grid:
    # CGCS2000 and WGS 84 (CRS84) coordinates differ by centimetres: geographic tiles of either
    # datum read the stored CGCS2000 geometry.
    return Grid(tms, STORAGE_SRID, "geom", _MAKE_ENVELOPE, sql.SQL("ST_Expand({}, %(pad)s)").format(_MAKE_ENVELOPE))


GRIDS = {
    WEB_MERCATOR_QUAD.id: Grid(
        WEB_MERCATOR_QUAD, 3857, "geom_3857",
        sql.SQL("ST_TileEnvelope(%(z)s, %(x)s, %(y)s)"),
        sql.SQL("ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => %(margin)s)"),
    ),
    **{tms.id: _geographic_grid(tms) for tms in (WORLD_CRS84_QUAD, CGCS2000_QUAD)},
}


def _relation(layer: Layer) -> sql.Identifier:
    return sql.Identifier(*layer.relation.split("."))


def _conditions(layer: Layer, grid: Grid, compiled: CompiledFilter | None) -> sql.Composable:
    conditions = [sql.SQL("{} && {}").format(sql.Identifier(grid.geom_column), grid.query_envelope)]
    if layer.where:
        conditions.append(sql.SQL("(" + layer.where + ")"))  # trusted catalogue SQL
    if compiled is not None:
        conditions.append(compiled.clause)
    return sql.SQL(" AND ").join(conditions)


def _mvt_geom(geometry: sql.Composable, grid: Grid) -> sql.Composable:
    return sql.SQL("ST_AsMVTGeom({}, {}, {}, {}, true)").format(
        geometry, grid.envelope, sql.Literal(EXTENT), sql.Literal(BUFFER))


def _features(layer: Layer, grid: Grid, z: int, compiled: CompiledFilter | None) -> sql.Composable:
    geom = sql.Identifier(grid.geom_column)
    if layer.geometry_type != "Point":
        geom = sql.SQL("ST_SimplifyPreserveTopology({}, %(tolerance)s)").format(geom)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in layer.tile_properties(z))
    return sql.SQL("SELECT {geom} AS geom, {columns} FROM {relation} WHERE {conditions} LIMIT {budget}").format(
        geom=_mvt_geom(geom, grid), columns=columns, relation=_relation(layer),
        conditions=_conditions(layer, grid, compiled), budget=sql.Literal(layer.tile_feature_budget))


def _linework(layer: Layer, grid: Grid, compiled: CompiledFilter | None) -> sql.Composable:
    # Each segment of the rings once, whichever ring it came from and in whichever direction (ends
    # snapped to the tile's own resolution, as neighbours' shared corners can differ by rounding), then
    # merged into lines per orientation: among the roughly horizontal edges of a mesh, a node joins
    # two of them, so a row of 100 m grid cells becomes one line, and simplifying it drops the corners
    # it runs through. A z14 tile of unit grids: 2,005 ring segments → 1,115 edges → 82 lines.
    geom = sql.Identifier(grid.geom_column)
    edges = sql.SQL(
        "SELECT DISTINCT ST_Normalize(ST_SnapToGrid(s.seg, %(quantum)s)) AS g "
        "FROM {relation}, ST_DumpSegments({geom}) AS s(path, seg) WHERE {conditions}"
    ).format(relation=_relation(layer), geom=geom, conditions=_conditions(layer, grid, compiled))
    merged = sql.SQL("ST_Simplify(ST_LineMerge(ST_Collect(g)), %(tolerance)s)")
    horizontal = sql.SQL("abs(ST_X(ST_EndPoint(g)) - ST_X(ST_StartPoint(g))) >= abs(ST_Y(ST_EndPoint(g)) - ST_Y(ST_StartPoint(g)))")
    return sql.SQL("SELECT {geom} AS geom FROM ({edges}) e WHERE NOT ST_IsEmpty(g) GROUP BY {horizontal}").format(
        geom=_mvt_geom(merged, grid), edges=edges, horizontal=horizontal)


def _counts(layer: Layer, grid: Grid, compiled: CompiledFilter | None) -> sql.Composable:
    geom = sql.Identifier(grid.geom_column)
    if layer.lowzoom == "count_per_grid" and compiled is None:
        points = sql.SQL("SELECT {geom} AS g, n FROM {counts} WHERE layer_id = {layer} AND {geom} && {box}").format(
            geom=geom, counts=GRID_COUNTS, layer=sql.Literal(layer.id), box=grid.query_envelope)
    else:
        points = sql.SQL("SELECT ST_Centroid({geom}) AS g, 1 AS n FROM {relation} WHERE {conditions}").format(
            geom=geom, relation=_relation(layer), conditions=_conditions(layer, grid, compiled))
    centre = sql.SQL("ST_Point(sum(ST_X(g) * n) / sum(n), sum(ST_Y(g) * n) / sum(n), {})").format(sql.Literal(grid.srid))
    return sql.SQL("SELECT {geom} AS geom, sum(n)::int AS count FROM ({points}) p GROUP BY ST_SnapToGrid(g, %(cell)s)").format(
        geom=_mvt_geom(centre, grid), points=points)


def layer_rows(layer: Layer, grid: Grid, z: int, compiled: CompiledFilter | None) -> sql.Composable | None:
    """The rows of `layer` in a tile at zoom z, or None when the layer holds nothing at that zoom."""
    if z > layer.maxzoom:
        return None
    if z >= layer.minzoom:
        if layer.linework_below is not None and z < layer.linework_below:
            return _linework(layer, grid, compiled)
        return _features(layer, grid, z, compiled)
    if layer.lowzoom:
        return _counts(layer, grid, compiled)
    return None


def tile_sql(layers: Sequence[Layer], grid: Grid, z: int, filters: Mapping[str, CompiledFilter] | None = None) -> sql.Composable | None:
    """The statement building a tile of `layers`, each filtered by its entry in `filters` if any."""
    parts = []
    for layer in layers:
        rows = layer_rows(layer, grid, z, (filters or {}).get(layer.id))
        if rows is not None:
            parts.append(sql.SQL("(SELECT coalesce(ST_AsMVT(t.*, {name}, {extent}, 'geom'), ''::bytea) FROM ({rows}) t)").format(
                name=sql.Literal(layer.id), extent=sql.Literal(EXTENT), rows=rows))
    if not parts:
        return None
    return sql.SQL("SELECT {} AS tile").format(sql.SQL(" || ").join(parts))


async def build_tile(conn: psycopg.AsyncConnection, tms: TileMatrixSet, tile: Tile, layers: Sequence[Layer],
                     filters: Mapping[str, CompiledFilter] | None = None) -> bytes:
    """The encoded tile (b"" when empty), each layer filtered by its entry in `filters` (compiled
    with distinct placeholder names). A filter that PostgreSQL cannot apply is InvalidInput."""
    grid = GRIDS[tms.id]
    query = tile_sql(layers, grid, tile.z, filters)
    if query is None:
        return b""
    params = grid.params(tile)
    for compiled in (filters or {}).values():
        params.update(compiled.params)
    try:
        row = await (await conn.execute(query, params)).fetchone()
    except psycopg.errors.DataError as exc:
        if not filters:
            raise
        raise InvalidInput(f"filter cannot be applied: {exc.diag.message_primary}") from None
    return bytes(row["tile"])
