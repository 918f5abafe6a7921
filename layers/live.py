"""The catalogue the running platform serves: the static declarations plus the published layers,
with each layer's queryables, reloaded when `city.published_layer` changes (via the change feed)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import psycopg
from psycopg_pool import AsyncConnectionPool

from gis.changes import Change
from gis.cql import Queryable
from gis.errors import NotFound
from layers.catalogue import CATALOGUE, Layer
from layers.published import load_published
from layers.queryables import COLUMNS_SQL, queryables_of

PUBLISHED_TABLE = "city.published_layer"

log = logging.getLogger("cityops.layers")
ReloadListener = Callable[["LiveCatalogue"], Awaitable[None]]


class LiveCatalogue:
    def __init__(self, static: tuple[Layer, ...] = CATALOGUE):
        self._static = static
        self._layers: dict[str, Layer] = {layer.id: layer for layer in static}
        self._queryables: dict[str, dict[str, Queryable]] = {}
        self._listeners: list[ReloadListener] = []
        self.version = 0

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(self._layers.values())

    def get(self, layer_id: str) -> Layer:
        try:
            return self._layers[layer_id]
        except KeyError:
            raise NotFound(f"unknown collection {layer_id!r}; known: {', '.join(self._layers)}") from None

    def queryables(self, layer_id: str) -> Mapping[str, Queryable]:
        return self._queryables.get(self.get(layer_id).id, {})

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
        self.version += 1
        for listener in self._listeners:
            await listener(self)

    def change_subscriber(self, pool: AsyncConnectionPool) -> Callable[[Change], Awaitable[None]]:
        async def reload_on_change(change: Change) -> None:
            if change.everything or change.table == PUBLISHED_TABLE:
                async with pool.connection() as conn:
                    await self.reload(conn)
        return reload_on_change
