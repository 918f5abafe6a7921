"""Vector tiles for the API and the CLI: validate the request, answer from the cache or build the
tile in PostGIS, and keep the cache true to the database by following the change feed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from gis.changes import Change
from gis.cql import CompiledFilter, compile_filter
from gis.errors import InvalidInput
from gis.replication import ReadRouter
from layers.catalogue import Layer
from layers.live import PUBLISHED_TABLE, LiveCatalogue
from tiles.aggregates import register_grid_counts
from tiles.cache import CachedTile, CacheKey, TileCache
from tiles.matrix_sets import check_tile, get_tms
from tiles.vector import build_tile

log = logging.getLogger("cityops.tiles")


class VectorTiles:
    def __init__(self, pool: AsyncConnectionPool, catalogue: LiveCatalogue, cache: TileCache,
                 reads: ReadRouter | None = None):
        self.pool = pool
        self.catalogue = catalogue
        self.cache = cache
        self.reads = reads or ReadRouter(pool, None)

    async def start(self) -> None:
        """Register the count layers now and after every catalogue reload."""
        async def on_reload(catalogue: LiveCatalogue) -> None:
            async with self.pool.connection() as conn:
                await register_grid_counts(conn, catalogue.layers)
        self.catalogue.on_reload(on_reload)
        await on_reload(self.catalogue)

    def layers(self, layer_ids: Sequence[str] | None) -> tuple[Layer, ...]:
        """The named layers (NotFound for an unknown one), or all of them."""
        if not layer_ids:
            return self.catalogue.layers
        return tuple(self.catalogue.get(layer_id) for layer_id in dict.fromkeys(layer_ids))

    async def tile(self, tms_id: str, z: int, row: int, col: int, layer_ids: Sequence[str] | None = None,
                   filter_text: str | None = None, filter_lang: str | None = None) -> CachedTile:
        tms = get_tms(tms_id)
        tile = check_tile(tms, z, row, col)
        layers = self.layers(layer_ids)
        filters = self._filters(layers, filter_text, filter_lang) if filter_text else None
        key = CacheKey(tms.id, z, col, row, tuple(layer.id for layer in layers),
                       f"{self.catalogue.version}|{filter_lang or ''}|{filter_text or ''}")
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        epoch = self.cache.epoch
        async with self.reads.connection() as conn:
            built = CachedTile.of(await build_tile(conn, tms, tile, layers, filters))
        self.cache.put(key, built, epoch)
        return built

    def _filters(self, layers: Sequence[Layer], filter_text: str, filter_lang: str | None) -> dict[str, CompiledFilter]:
        """The filter compiled for each layer against its own queryables; in a dataset tile it must
        apply to every layer asked for, and an error names the one it does not apply to."""
        filters = {}
        for layer in layers:
            try:
                filters[layer.id] = compile_filter(filter_text, self.catalogue.queryables(layer.id), lang=filter_lang,
                                                   param_prefix=f"cql_{layer.id}_")
            except InvalidInput as exc:
                raise InvalidInput(f"collection {layer.id}: {exc}" if len(layers) > 1 else str(exc)) from None
        return filters

    async def on_change(self, change: Change) -> None:
        # The watermark rises before any tile is forgotten, so no rebuild can read a replica that
        # has not replayed this change yet.
        await self.reads.note_change()
        if change.everything or change.table == PUBLISHED_TABLE:
            self.cache.clear()
            return
        layers = self.catalogue.layers_reading(change.table)
        if layers:
            forgotten = self.cache.invalidate(change.bbox, layers)
            log.debug("%s changed in %s: %d cached tiles forgotten", change.table, change.bbox, forgotten)
