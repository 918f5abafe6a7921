"""What a collection document says about a layer that only the data knows: its queryables and
its spatial and temporal extent, read once per process and kept (the catalogue is fixed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from gis.cql import Queryable
from layers.catalogue import Layer
from layers.features import relation
from layers.queryables import COLUMNS_SQL, queryables_of


@dataclass(frozen=True)
class Extent:
    bbox: tuple[float, float, float, float] | None  # CRS84
    interval: tuple[str | None, ...] | None


@dataclass
class CollectionFacts:
    queryables: dict[str, dict[str, Queryable]] = field(default_factory=dict)
    extents: dict[str, Extent] = field(default_factory=dict)

    async def queryables_of(self, conn: psycopg.AsyncConnection, layer: Layer) -> dict[str, Queryable]:
        if layer.id not in self.queryables:
            rows = await (await conn.execute(COLUMNS_SQL, [layer.relation])).fetchall()
            self.queryables[layer.id] = queryables_of(layer, rows)
        return self.queryables[layer.id]

    async def extent_of(self, conn: psycopg.AsyncConnection, layer: Layer) -> Extent:
        if layer.id not in self.extents:
            self.extents[layer.id] = await _extent(conn, layer)
        return self.extents[layer.id]


async def _extent(conn: psycopg.AsyncConnection, layer: Layer) -> Extent:
    """The bounding box (CGCS2000 coordinates are CRS84 ones at this accuracy) and time span."""
    temporal = (sql.SQL("min({c}) AS t0, max({c}) AS t1").format(c=sql.Identifier(layer.datetime_column))
                if layer.datetime_column else sql.SQL("NULL AS t0, NULL AS t1"))
    where = sql.SQL(layer.where) if layer.where else sql.SQL("TRUE")
    row = await (await conn.execute(sql.SQL(
        "SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1, t0, t1 "
        "FROM (SELECT ST_Extent(geom) AS e, {temporal} FROM {rel} WHERE {where}) x"
    ).format(temporal=temporal, rel=relation(layer), where=where))).fetchone()
    bbox = (row["x0"], row["y0"], row["x1"], row["y1"]) if row["x0"] is not None else None
    times = tuple(t.isoformat() if t else None for t in (row["t0"], row["t1"]))
    return Extent(bbox, times if layer.datetime_column else None)
