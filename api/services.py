"""Every background service of the app, started and stopped in one place (the app's lifespan):
the async pool the routes share, the synchronous pool of the drone routes, the change feed, the
live catalogue, the grid index, the vector and raster tile services, the wall's live hub, the job
workers and the operations sweep; reads go through the read router (a replica when configured).

Order matters only here: the change feed listens before the catalogue is read, so a layer
published in between is not missed; everything that subscribes to the feed does so after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from api.job_kinds import JOB_KINDS
from api.live_hub import LiveHub
from gis.changes import ChangeFeed
from gis.db import connection_options, create_pool, create_read_pool
from gis.grid_index import GridIndexHolder
from gis.jobs import WorkerPool
from gis.limits import LimitSettings
from gis.replication import PrimaryGate, ReadRouter
from gis.settings import JobSettings, Settings, settings_of
from layers.live import LiveCatalogue
from tiles.cache import TileCache
from ops.settings import OpsSettings
from ops.sweeper import sweep_forever
from tiles.raster import RasterTiles
from tiles.service import VectorTiles
from tiles.settings import TileSettings

SYNC_POOL_MAX = 4  # drone routes: uploads and reviews, a few at a time


class Services:
    """What the routes reach through `app.state`; built with the app, opened by `lifespan`."""

    def __init__(self, settings: Settings, conninfo: str):
        self.settings = settings
        self.conninfo = conninfo
        self.pool = create_pool(settings, conninfo)
        self.read_pool = create_read_pool(settings)
        self.primary = PrimaryGate(self.pool)
        self.reads = ReadRouter(self.primary, self.read_pool, wait_s=settings.replica_wait_ms / 1000)
        self.sync_pool = ConnectionPool(conninfo, min_size=1, max_size=SYNC_POOL_MAX, open=False,
                                        kwargs=connection_options(settings))
        # A transaction-mode pooler cannot hold a LISTEN: the feed may go straight to the primary.
        self.changes = ChangeFeed(settings.listen_database_url or conninfo)
        self.catalogue = LiveCatalogue()
        self.grid_index = GridIndexHolder()
        tile_settings = settings_of(TileSettings)
        self.tiles = VectorTiles(self.pool, self.catalogue, TileCache(tile_settings.tile_cache_mb * 2**20), reads=self.reads)
        self.raster_tiles = RasterTiles(self.pool, TileCache(tile_settings.raster_cache_mb * 2**20), tile_settings)
        self.live_hub = LiveHub(self.pool)
        self.analysis_turns = asyncio.Semaphore(settings_of(LimitSettings).analysis_max_concurrent)
        jobs = settings_of(JobSettings)
        self.workers = WorkerPool(conninfo, settings, JOB_KINDS, workers=jobs.job_workers,
                                  stale_after_s=jobs.job_stale_s, sweep_every_s=jobs.job_sweep_s)

    def expose(self, app: FastAPI) -> None:
        state = app.state
        state.settings, state.pool, state.sync_pool, state.changes = self.settings, self.pool, self.sync_pool, self.changes
        state.catalogue, state.grid_index, state.tiles, state.live_hub = self.catalogue, self.grid_index, self.tiles, self.live_hub
        state.workers, state.reads, state.raster_tiles = self.workers, self.reads, self.raster_tiles
        state.primary, state.analysis_turns = self.primary, self.analysis_turns

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.pool.open(wait=True, timeout=30)
        await to_thread.run_sync(lambda: self.sync_pool.open(wait=True, timeout=30))
        if self.read_pool is not None:
            await self.read_pool.open(wait=False)  # a replica that is down must not delay the start
        try:
            await self.changes.start()
            async with self.pool.connection() as conn:
                await self.catalogue.reload(conn)
            self.changes.subscribe(self.catalogue.change_subscriber(self.pool))
            self.changes.subscribe(self.grid_index.change_subscriber())
            await self.tiles.start()
            self.changes.subscribe(self.tiles.on_change)
            self.changes.subscribe(self.raster_tiles.on_change)
            self.changes.subscribe(self.live_hub.on_change)
            await to_thread.run_sync(self.workers.start)
            sweeper = asyncio.get_running_loop().create_task(
                sweep_forever(self.pool, settings_of(OpsSettings).sweep_interval_s), name="cityops-ops-sweep")
            try:
                yield
            finally:
                sweeper.cancel()
        finally:
            await to_thread.run_sync(self.workers.stop)
            await self.changes.stop()
            await to_thread.run_sync(self.sync_pool.close)
            if self.read_pool is not None:
                await self.read_pool.close()
            await self.pool.close()
