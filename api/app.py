"""The FastAPI application, composed here and only here: the services (`api.services`, started and
stopped in the lifespan), the routers, the error mapping and the OpenAPI document.

No route shadows another: collection routes are `/collections/{collectionId}/…` with distinct
tails (items, queryables, tiles, map/tiles), and `/collections/{collectionId}` itself is one route
that resolves the id through the live catalogue, then through the extensions that serve other kinds
of collection (the raster imagery), so the order of `extensions()` carries no meaning.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import errors, hardening, openapi
from api.cql_search import CqlSearchByPost
from api.extension import Extension
from api.routers.cases import cases_extension
from api.routers.catalogue import catalogue_extension
from api.routers.drone import drone_extension
from api.routers.features import collections_openapi, features_extension
from api.routers.jobs import jobs_extension
from api.routers.landing import landing_extension
from api.routers.live import live_extension
from api.routers.open311 import open311_extension
from api.routers.operations import operations_extension
from api.routers.orthophotos import CachedRasterTiles, orthophotos_extension
from api.routers.pages import pages_extension
from api.routers.qgis import qgis_extension
from api.routers.queries import queries_extension
from api.routers.schemas import schemas_extension
from api.routers.search import search_extension
from api.routers.sensors import sensors_extension
from api.routers.tile_jobs import tile_jobs_extension
from api.routers.tiles import tiles_extension
from api.routers.transfer import transfer_extension
from api.routers.web_map import web_map_extension
from api.services import Services
from gis.db import conninfo as conninfo_of
from gis.settings import Settings, get_settings


def extensions() -> list[Extension]:
    return [landing_extension(), features_extension(), orthophotos_extension(), schemas_extension(), tiles_extension(),
            queries_extension(), transfer_extension(), drone_extension(), catalogue_extension(), search_extension(),
            live_extension(), operations_extension(), cases_extension(), sensors_extension(), web_map_extension(),
            open311_extension(), pages_extension(), qgis_extension(), jobs_extension(), tile_jobs_extension()]


def create_app(settings: Settings | None = None, conninfo: str | None = None,
               composed: list[Extension] | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = Services(settings, conninfo or conninfo_of(settings))
    app = FastAPI(
        title="cityops",
        version="0.1.0",
        description="城市运行管理服务平台 spatial core: OGC API Features and Tiles over PostGIS.",
        openapi_url="/api",
        docs_url="/docs",
        lifespan=services.lifespan,
    )
    services.expose(app)
    app.state.conformance = set()
    app.state.landing_links = []
    app.state.collection_link_providers = []
    app.state.collection_providers = []
    app.state.collection_resolvers = []
    for extension in composed if composed is not None else extensions():
        app.include_router(extension.router)
        app.state.conformance.update(extension.conformance)
        app.state.landing_links.extend(extension.links)
        app.state.collection_link_providers.extend(extension.collection_links)
        if extension.collections:
            app.state.collection_providers.append(extension.collections)
        if extension.collection:
            app.state.collection_resolvers.append(extension.collection)
    app.add_middleware(CqlSearchByPost)  # OWSLib's collection_items(cql=…) POSTs a CQL2-JSON search to …/items
    app.add_middleware(CachedRasterTiles)  # a cached orthophoto/mosaic tile answered before routing
    hardening.install(app)  # CORS from settings, rate and body limits, security headers, local /docs
    errors.install(app)
    _document_collections(app, services)
    return app


def _document_collections(app: FastAPI, services: Services) -> None:
    """The OpenAPI document lists each collection of the live catalogue (rebuilt when it reloads), in
    the OpenAPI 3.0 form OGC clients read (api.openapi)."""
    built: dict[int, dict] = {}

    def document() -> dict:
        version = services.catalogue.version
        if version not in built:
            generic = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            built.clear()
            built[version] = openapi.as_ogc_document(
                hardening.declare_bearer_scheme(collections_openapi(generic, services.catalogue)))
        return built[version]

    app.openapi = document
