"""Point location against the unit grids, in memory.

A city has tens of thousands of unit grids but asks "which grid is this point in" for batches of
up to 100,000 points. One PostgreSQL join pays an index probe and a fresh point-in-polygon test
per point (~80 µs each here); a shapely STRtree over the grids held in the API process answers
the whole batch in one vectorised call. The index is rebuilt when the change feed reports a write
to any table it was built from, so it is never stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_bounds

from gis.changes import Change

SOURCE_TABLES = ("city.unit_grid", "city.community", "city.street", "city.district", "city.responsible_unit")

GRIDS_SQL = "SELECT bgcode, responsible_unit_id, ST_AsBinary(geom) AS wkb FROM city.unit_grid ORDER BY bgcode"
DISTRICTS_SQL = "SELECT code, name, ST_AsBinary(geom) AS wkb FROM city.district ORDER BY code"
NAMES_SQL = """
SELECT 'community' AS kind, code::text AS key, name, NULL::text AS code FROM city.community
UNION ALL SELECT 'street', code::text, name, NULL FROM city.street
UNION ALL SELECT 'unit', id::text, name, code FROM city.responsible_unit
"""


TILE_DEG = 0.01
CELLS_PER_TILE = 256  # cells of ≈4 m: a point's cell lies wholly inside one grid unless on a grid edge
OUTSIDE, AMBIGUOUS = -1, -2


class CellLookup:
    """Sparse lookup rasters over the grids: each cell holds the grid that wholly contains it, or
    OUTSIDE, or AMBIGUOUS where a grid edge crosses it. Points in clear cells are answered by
    array indexing; only points in edge cells need an exact point-in-polygon test."""

    def __init__(self, polygons: np.ndarray, tree: shapely.STRtree):
        tiles: list[np.ndarray] = []
        self.slots: dict[tuple[int, int], int] = {}
        minx, miny, maxx, maxy = shapely.total_bounds(polygons)
        for ti in range(int(np.floor(minx / TILE_DEG)), int(np.floor(maxx / TILE_DEG)) + 1):
            for tj in range(int(np.floor(miny / TILE_DEG)), int(np.floor(maxy / TILE_DEG)) + 1):
                bounds = (ti * TILE_DEG, tj * TILE_DEG, (ti + 1) * TILE_DEG, (tj + 1) * TILE_DEG)
                inside = tree.query(shapely.box(*bounds))
                if len(inside):
                    self.slots[(ti, tj)] = len(tiles)
                    tiles.append(self._rasterise(polygons, inside, bounds))
        self.stack = np.stack(tiles)

    @staticmethod
    def _rasterise(polygons: np.ndarray, indices: np.ndarray, bounds) -> np.ndarray:
        transform = from_bounds(*bounds, CELLS_PER_TILE, CELLS_PER_TILE)
        shape = (CELLS_PER_TILE, CELLS_PER_TILE)
        cells = rasterize(zip(polygons[indices], indices.tolist()), out_shape=shape, transform=transform,
                          fill=OUTSIDE, dtype="int32")
        edges = rasterize(((edge, 1) for edge in shapely.boundary(polygons[indices])), out_shape=shape,
                          transform=transform, fill=0, all_touched=True, dtype="uint8")
        cells[edges.astype(bool)] = AMBIGUOUS
        return cells

    def cells_of(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        """The cell value under each point (OUTSIDE where no tile was built), in one gather."""
        ti = np.floor(lons / TILE_DEG).astype(np.int64)
        tj = np.floor(lats / TILE_DEG).astype(np.int64)
        col = np.clip(((lons / TILE_DEG - ti) * CELLS_PER_TILE).astype(np.int64), 0, CELLS_PER_TILE - 1)
        row = np.clip(((tj + 1 - lats / TILE_DEG) * CELLS_PER_TILE).astype(np.int64), 0, CELLS_PER_TILE - 1)
        keys, inverse = np.unique(np.column_stack([ti, tj]), axis=0, return_inverse=True)
        slot_of_key = np.array([self.slots.get((i, j), -1) for i, j in keys.tolist()], dtype=np.int64)
        slot = slot_of_key[inverse.ravel()]
        known = slot >= 0
        result = np.full(len(lons), OUTSIDE, dtype=np.int64)
        result[known] = self.stack[slot[known], row[known], col[known]]
        return result


def _first_hit(tree: shapely.STRtree, points: np.ndarray) -> np.ndarray:
    """Index of the tree polygon holding each point (-1 if none); on a shared edge the lowest
    index wins, and indices follow the codes' order, so the lowest code."""
    point_idx, poly_idx = tree.query(points, predicate="intersects")
    hit = np.full(len(points), -1)
    order = np.lexsort((poly_idx, point_idx))
    point_idx, poly_idx = point_idx[order], poly_idx[order]
    first = np.unique(point_idx, return_index=True)[1]
    hit[point_idx[first]] = poly_idx[first]
    return hit


@dataclass(frozen=True)
class GridIndex:
    grids: shapely.STRtree
    cells: CellLookup | None
    grid_rows: list[dict]
    districts: shapely.STRtree
    district_rows: list[dict]

    @classmethod
    async def load(cls, conn: psycopg.AsyncConnection) -> GridIndex:
        grids = await (await conn.execute(GRIDS_SQL)).fetchall()
        districts = await (await conn.execute(DISTRICTS_SQL)).fetchall()
        names = await (await conn.execute(NAMES_SQL)).fetchall()
        # Building the trees and lookup rasters takes a second or more: keep it off the event loop.
        return await asyncio.to_thread(cls._build, grids, districts, names)

    @classmethod
    def _build(cls, grids: list[dict], districts: list[dict], names: list[dict]) -> GridIndex:
        communities = {n["key"]: n["name"] for n in names if n["kind"] == "community"}
        streets = {n["key"]: n["name"] for n in names if n["kind"] == "street"}
        units = {int(n["key"]): (n["code"], n["name"]) for n in names if n["kind"] == "unit"}
        district_names = {d["code"]: d["name"] for d in districts}
        polygons = shapely.from_wkb([g["wkb"] for g in grids])
        tree = shapely.STRtree(polygons)
        grid_rows = []
        for g in grids:
            code = g["bgcode"]
            unit_code, unit_name = units.get(g["responsible_unit_id"], (None, None))
            grid_rows.append({
                "bgcode": code, "community_code": code[:12], "community_name": communities.get(code[:12]),
                "street_code": code[:9], "street_name": streets.get(code[:9]),
                "district_code": code[:6], "district_name": district_names.get(code[:6]),
                "responsible_unit_code": unit_code, "responsible_unit_name": unit_name,
            })
        empty = dict.fromkeys(grid_rows[0] if grid_rows else ("bgcode",))
        district_rows = [{**empty, "district_code": d["code"], "district_name": d["name"]} for d in districts]
        return cls(
            grids=tree,
            cells=CellLookup(polygons, tree) if len(polygons) else None,
            grid_rows=grid_rows,
            districts=shapely.STRtree(shapely.from_wkb([d["wkb"] for d in districts])),
            district_rows=[*district_rows, empty],  # the last row answers points outside every district
        )

    def locate(self, lons: Sequence[float], lats: Sequence[float]) -> list[dict]:
        """For each point, its grid, community, street, district and responsible unit (names and codes)."""
        x = np.asarray(lons, dtype=float)
        y = np.asarray(lats, dtype=float)
        grid = self.cells.cells_of(x, y) if self.cells else np.full(len(x), OUTSIDE)
        edge = np.flatnonzero(grid == AMBIGUOUS)
        if len(edge):
            grid[edge] = _first_hit(self.grids, shapely.points(x[edge], y[edge]))
        outside = np.flatnonzero(grid < 0)
        district = np.full(len(x), -1)
        if len(outside):
            district[outside] = _first_hit(self.districts, shapely.points(x[outside], y[outside]))
        grid_rows, district_rows = self.grid_rows, self.district_rows
        # Rows are shared, read-only answers: result i answers point i.
        return [grid_rows[g] if g >= 0 else district_rows[d] for g, d in zip(grid.tolist(), district.tolist())]


class GridIndexHolder:
    """The app's one index: built on first use, dropped when its source tables change."""

    def __init__(self):
        self._index: GridIndex | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._generation += 1
        self._index = None

    def change_subscriber(self) -> Callable[[Change], Awaitable[None]]:
        async def drop_on_change(change: Change) -> None:
            if change.everything or change.table in SOURCE_TABLES:
                self.invalidate()
        return drop_on_change

    async def get(self, conn: psycopg.AsyncConnection) -> GridIndex:
        async with self._lock:
            if self._index is not None:
                return self._index
            generation = self._generation
            index = await GridIndex.load(conn)
            # A change reported while loading may be missing from `index`: use it once, keep it not.
            if generation == self._generation:
                self._index = index
            return index
