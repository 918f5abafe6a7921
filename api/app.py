"""The FastAPI application: settings and the DB pool live in app.state, set up in the lifespan."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors
from api.extension import Extension
from api.routers.cases import cases_extension
from api.routers.catalogue import catalogue_extension
from api.routers.drone import drone_extension
from api.routers.features import features_extension
from api.routers.landing import landing_extension
from api.routers.live import live_extension
from api.routers.operations import operations_extension
from api.routers.queries import queries_extension
from api.routers.search import search_extension
from api.routers.sensors import sensors_extension
from api.routers.tiles import tiles_extension
from api.routers.transfer import transfer_extension
from api.routers.web_map import web_map_extension
from gis.changes import ChangeFeed
from gis.db import conninfo as conninfo_of
from gis.db import create_pool
from gis.grid_index import GridIndexHolder
from gis.settings import Settings, get_settings
from layers.live import LiveCatalogue


def extensions(settings: Settings) -> list[Extension]:
    # Tiles before Features: the Features router ends with a catch-all /collections/{id}/{rest} that
    # would otherwise answer 404 for /collections/{id}/tiles/...
    return [landing_extension(), operations_extension(), tiles_extension(), features_extension(), queries_extension(),
            transfer_extension(), drone_extension(), catalogue_extension(), search_extension(), live_extension(),
            cases_extension(), sensors_extension(), web_map_extension()]


def create_app(settings: Settings | None = None, conninfo: str | None = None) -> FastAPI:
    settings = settings or get_settings()
    pool = create_pool(settings, conninfo)
    changes = ChangeFeed(conninfo or conninfo_of(settings))
    catalogue = LiveCatalogue()
    installed = extensions(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.open(wait=True, timeout=30)
        try:
            # Listen before reading the catalogue, so a layer published in between is not missed.
            await changes.start()
            async with pool.connection() as conn:
                await catalogue.reload(conn)
            changes.subscribe(catalogue.change_subscriber(pool))
            changes.subscribe(app.state.grid_index.change_subscriber())
            for extension in installed:
                if extension.startup:
                    await extension.startup(app)
            yield
        finally:
            await changes.stop()
            await pool.close()

    app = FastAPI(
        title="cityops",
        version="0.1.0",
        description="城市运行管理服务平台 spatial core: OGC API Features and Tiles over PostGIS.",
        openapi_url="/api",
        docs_url="/docs",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.pool = pool
    app.state.changes = changes
    app.state.catalogue = catalogue
    app.state.conformance = set()
    app.state.landing_links = []
    app.state.collection_link_providers = []
    app.state.grid_index = GridIndexHolder()
    for extension in installed:
        app.include_router(extension.router)
        app.state.conformance.update(extension.conformance)
        app.state.landing_links.extend(extension.links)
        app.state.collection_link_providers.extend(extension.collection_links)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], expose_headers=["ETag", "Content-Crs"])
    errors.install(app)
    return app
