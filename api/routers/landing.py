"""OGC API common: landing page, conformance, health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import Connection
from api import feature_responses as out
from api import openapi
from api.extension import Extension

CORE = (
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
)


def landing_extension() -> Extension:
    router = APIRouter(tags=["OGC API Common"])

    @router.get("/", summary="Landing page", responses=out.JSON_OR_HTML)
    async def landing(request: Request, f: Annotated[str, Query(pattern="^(json|html)$")] = None):
        base = str(request.base_url).rstrip("/")
        links = [
            {"rel": "self", "type": "application/json", "title": "This document", "href": f"{base}/"},
            {"rel": "alternate", "type": "text/html", "title": "This document as HTML", "href": f"{base}/?f=html"},
            {"rel": "service-desc", "type": openapi.MEDIA_TYPE, "title": "OpenAPI definition", "href": f"{base}/api"},
            {"rel": "service-doc", "type": "text/html", "title": "API documentation", "href": f"{base}/docs"},
            {"rel": "conformance", "type": "application/json", "title": "Conformance classes", "href": f"{base}/conformance"},
        ]
        links += [{**link, "href": base + link["href"]} for link in request.app.state.landing_links]
        document = {
            "title": "cityops — 城市运行管理服务平台",
            "description": "Spatial core of a city operations platform: unit grids, components, stall sites, "
                           "buildings, alarms and cases of the city, as OGC API Features and Tiles.",
            "links": links,
        }
        if out.output_format(request, f) == "html":
            return out.html(request, "landing.html", landing=document)
        return document

    @router.get("/conformance", summary="Conformance classes", responses=out.JSON_OR_HTML)
    async def conformance(request: Request, f: Annotated[str, Query(pattern="^(json|html)$")] = None):
        classes = sorted(request.app.state.conformance)
        if out.output_format(request, f) == "html":
            return out.html(request, "conformance.html", classes=classes)
        return {"conformsTo": classes}

    @router.get("/healthz", summary="Health of the service and its database")
    async def healthz(conn: Connection):
        row = await (await conn.execute("SELECT postgis_lib_version() AS postgis, version() AS postgres")).fetchone()
        return {"status": "ok", "database": "ok", "postgis": row["postgis"], "postgres": row["postgres"].split(",")[0]}

    return Extension(router=router, conformance=CORE)
