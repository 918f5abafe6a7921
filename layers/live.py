"""The one catalogue the running platform serves (tipg's `CollectionParams` is the model): the
static declarations plus the layers published at run time (`city.published_layer`), with each
layer's queryables and, once asked for, its extent, and the database's cursor key
(`layers.paging`). The change feed keeps it fresh: a change to
`city.published_layer` reloads it, a change to a layer's table forgets that layer's extent.

Features, tiles, the style, exports, imports and the planners' queries all resolve a collection id
to a `Layer` here (`get`); synchronous callers that hold no catalogue (the CLI, import jobs) use
`resolve`, which reads the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from gis.changes import Change
from gis.cql import Queryable
from gis.errors import NotFound
from layers import paging
from layers.catalogue import CATALOGUE, Layer
from layers.published import PUBLISHED_SQL, PUBLISHED_ONE_SQL, layer_from_row, load_published
from layers.queryables import COLUMNS_SQL, queryables_of

PUBLISHED_TABLE = "city.published_layer"

log = logging.getLogger("cityops.layers")
ReloadListener = Callable[["LiveCatalogue"], Awaitable[None]]


@dataclass(frozen=True)
class Extent:
    bbox: tuple[float, float, float, float] | None  # CRS84
    interval: tuple[str | None, ...] | None


def _unknown(layer_id: str, known: object) -> NotFound:
    # "collection" in OGC API terms, "layer" in the catalogue's and the CLI's
    return NotFound(f"unknown layer {layer_id!r} (unknown collection); known layers: {', '.join(known)}")


class LiveCatalogue:
    def __init__(self, static: tuple[Layer, ...] = CATALOGUE):
        self._static = static
        self._layers: dict[str, Layer] = {layer.id: layer for layer in static}
        self._queryables: dict[str, dict[str, Queryable]] = {}
        self._extents: dict[str, Extent] = {}
        self._listeners: list[ReloadListener] = []
        self._paging_key: bytes | None = None
        self.version = 0

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(self._layers.values())

    def get(self, layer_id: str) -> Layer:
        try:
            return self._layers[layer_id]
        except KeyError:
            raise _unknown(layer_id, self._layers) from None

    @property
    def paging_key(self) -> bytes:
        """The key that signs this database's Features cursors, read by `reload`."""
        if self._paging_key is None:
            raise RuntimeError("the live catalogue was never loaded from its database (reload)")
        return self._paging_key

    def queryables(self, layer_id: str) -> Mapping[str, Queryable]:
        return self._queryables.get(self.get(layer_id).id, {})

    async def extent(self, conn: psycopg.AsyncConnection, layer: Layer) -> Extent:
        """The layer's extent, read once and kept until its data changes."""
        if layer.id not in self._extents:
            self._extents[layer.id] = await _extent(conn, layer)
        return self._extents[layer.id]

    def layers_reading(self, table: str) -> set[str]:
        return {layer.id for layer in self._layers.values() if table in layer.tables}

    def on_reload(self, listener: ReloadListener) -> None:
        self._listeners.append(listener)

    async def reload(self, conn: psycopg.AsyncConnection) -> None:
        published = [layer for layer in await load_published(conn) if layer.id not in {s.id for s in self._static}]
        layers = {layer.id: layer for layer in (*self._static, *published)}
        queryables = {}
        for layer in layers.values():
            try:
                columns = await (await conn.execute(COLUMNS_SQL, [layer.relation])).fetchall()
            except psycopg.errors.UndefinedTable:
                log.error("layer %r reads %s, which does not exist; it is not served", layer.id, layer.relation)
                continue
            queryables[layer.id] = queryables_of(layer, columns)
        self._layers = {layer_id: layer for layer_id, layer in layers.items() if layer_id in queryables}
        self._queryables = queryables
        self._extents = {}
        self._paging_key = await paging.paging_key(conn)
        self.version += 1
        for listener in self._listeners:
            await listener(self)

    def change_subscriber(self, pool: AsyncConnectionPool) -> Callable[[Change], Awaitable[None]]:
        async def on_change(change: Change) -> None:
            if change.everything or change.table == PUBLISHED_TABLE:
                async with pool.connection() as conn:
                    await self.reload(conn)
            else:
                for layer_id in self.layers_reading(change.table):
                    self._extents.pop(layer_id, None)
        return on_change


def resolve(conn: psycopg.Connection, layer_id: str) -> Layer:
    """The layer `layer_id` names, for synchronous callers: a static declaration or a published row."""
    static = {layer.id: layer for layer in CATALOGUE}
    if layer_id in static:
        return static[layer_id]
    row = conn.execute(PUBLISHED_ONE_SQL, [layer_id]).fetchone()
    if row is None:
        known = [*static, *(r["id"] for r in conn.execute(PUBLISHED_SQL).fetchall())]
        raise _unknown(layer_id, known)
    return layer_from_row(row)


async def _extent(conn: psycopg.AsyncConnection, layer: Layer) -> Extent:
    """The bounding box (CGCS2000 coordinates are CRS84 ones at this accuracy) and time span."""
    temporal = (sql.SQL("min({c}) AS t0, max({c}) AS t1").format(c=sql.Identifier(layer.datetime_column))
                if layer.datetime_column else sql.SQL("NULL AS t0, NULL AS t1"))
    where = sql.SQL(layer.where) if layer.where else sql.SQL("TRUE")
    row = await (await conn.execute(sql.SQL(
        "SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1, t0, t1 "
        "FROM (SELECT ST_Extent(geom) AS e, {temporal} FROM {rel} WHERE {where}) x"
    ).format(temporal=temporal, rel=sql.Identifier(*layer.relation.split(".")), where=where))).fetchone()
    bbox = (row["x0"], row["y0"], row["x1"], row["y1"]) if row["x0"] is not None else None
    times = tuple(t.isoformat() if t else None for t in (row["t0"], row["t1"]))
    return Extent(bbox, times if layer.datetime_column else None)
