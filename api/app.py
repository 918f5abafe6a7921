"""The FastAPI application: settings and the DB pool live in app.state, set up in the lifespan."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors
from api.extension import Extension
from api.routers.drone import drone_extension
from api.routers.landing import landing_extension
from api.routers.operations import operations_extension
from gis.db import create_pool
from gis.settings import Settings, get_settings


def extensions(settings: Settings) -> list[Extension]:
    return [landing_extension(), operations_extension(), drone_extension()]


def create_app(settings: Settings | None = None, conninfo: str | None = None) -> FastAPI:
    settings = settings or get_settings()
    pool = create_pool(settings, conninfo)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.open(wait=True, timeout=30)
        try:
            yield
        finally:
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
    app.state.conformance = set()
    app.state.landing_links = []
    for extension in extensions(settings):
        app.include_router(extension.router)
        app.state.conformance.update(extension.conformance)
        app.state.landing_links.extend(extension.links)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], expose_headers=["ETag", "Content-Crs"])
    errors.install(app)
    return app
