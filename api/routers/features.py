"""OGC API Features Parts 1–4 for every catalogue layer: routes are built from the catalogue, one
set per collection, so a new layer is one declaration and the OpenAPI document lists each
collection's own parameters (and write operations only where the layer is editable).

No `from __future__ import annotations` here: FastAPI must see the per-collection parameter
models, which are local to the route factory, as real objects rather than strings.
"""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from psycopg_pool import AsyncConnectionPool

from api.deps import Connection, get_pool, get_principal
from api.extension import Extension
from api.feature_params import (PAGE_MAX_LIMIT, STREAM_MAX_LIMIT, FeatureParams, ItemsParams, equality_filters,
                                items_params_model)
from api import feature_responses as out
from gis.crs import parse_crs
from gis.errors import InvalidInput, NotFound
from gis.keys import Principal
from layers import edits, features
from layers.catalogue import CATALOGUE, Layer, get_layer
from layers.collections import CollectionFacts

CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
)
GEO_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {
    out.GEOJSON: {}, "text/html": {}, "text/csv": {}, out.MEDIA_TYPES["jsonseq"]: {}}}}
Pool = Annotated[AsyncConnectionPool, Depends(get_pool)]
# any valid key: which role may write what (per table and per field) is decided in layers.edits
Editor = Annotated[Principal, Depends(get_principal)]
IfMatch = Annotated[str, Header(alias="If-Match", description="the ETag of the feature as last read")]
ContentCrs = Annotated[str, Header(alias="Content-Crs", description="CRS of the body's geometry (default CRS84)")]


def features_extension(catalogue: tuple[Layer, ...] = CATALOGUE) -> Extension:
    router = APIRouter(tags=["OGC API Features"])
    facts = CollectionFacts()

    @router.get("/collections", summary="The collections (one per catalogue layer)")
    async def collections(request: Request, conn: Connection, f: Annotated[str, Query(pattern="^(json|html)$")] = None):
        documents = [out.collection_document(request, layer, await facts.extent_of(conn, layer),
                                             request.app.state.collection_link_providers) for layer in catalogue]
        if out.output_format(request, f) == "html":
            return out.html(request, "collections.html", collections=documents)
        return {"links": out.self_links(request, "json", "Collections"), "collections": documents}

    for layer in catalogue:
        _collection_routes(router, layer, facts)
        if layer.editable:
            _write_routes(router, layer, facts)

    @router.api_route("/collections/{collectionId}", methods=["GET", "POST"], include_in_schema=False)
    @router.api_route("/collections/{collectionId}/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    async def unknown_collection(request: Request, collectionId: str):
        layer = get_layer(collectionId)  # raises NotFound naming the collections there are
        if request.method != "GET":
            raise HTTPException(405, f"collection {layer.id!r} is read-only" if not layer.editable
                                else f"{request.method} is not allowed here")
        raise NotFound(f"collection {collectionId!r} has no resource {request.url.path!r}")
    return Extension(router=router, conformance=CONFORMANCE,
                     links=({"rel": "data", "type": "application/json", "title": "Collections", "href": "/collections"},))


def _collection_routes(router: APIRouter, layer: Layer, facts: CollectionFacts) -> None:
    path = f"/collections/{layer.id}"
    params_model = items_params_model(layer)

    @router.get(path, summary=f"{layer.title}: collection", name=f"{layer.id}.collection")
    async def collection(request: Request, conn: Connection, f: Annotated[str, Query(pattern="^(json|html)$")] = None):
        document = out.collection_document(request, layer, await facts.extent_of(conn, layer),
                                           request.app.state.collection_link_providers)
        if out.output_format(request, f) == "html":
            return out.html(request, "collection.html", collection=document)
        return document

    @router.get(f"{path}/queryables", summary=f"{layer.title}: queryable properties", name=f"{layer.id}.queryables",
                responses={200: {"content": {"application/schema+json": {}}}})
    async def queryables(request: Request, conn: Connection, f: Annotated[str, Query(pattern="^(json|html)$")] = None):
        schema = features.queryables_schema(layer, await facts.queryables_of(conn, layer), str(request.url))
        if out.output_format(request, f) == "html":
            return out.html(request, "queryables.html", layer=layer, schema=schema)
        return JSONResponse(schema, media_type="application/schema+json")

    @router.get(f"{path}/items", summary=f"{layer.title}: features", name=f"{layer.id}.items",
                response_class=Response, responses=GEO_RESPONSES)
    async def items(request: Request, params: Annotated[params_model, Query()], conn: Connection, pool: Pool):
        kind = out.output_format(request, params.f)
        maximum = STREAM_MAX_LIMIT if kind in ("csv", "jsonseq") else PAGE_MAX_LIMIT
        if params.limit > maximum:
            raise InvalidInput(f"limit {params.limit} is over the maximum {maximum:,} for f={kind}")
        selection = features.select(
            layer, await facts.queryables_of(conn, layer), bbox=params.bbox, bbox_crs=params.bbox_crs,
            datetime_value=params.datetime, equals=equality_filters(params), cql=params.filter,
            filter_lang=params.filter_lang, filter_crs=params.filter_crs, sortby=params.sortby,
            properties=params.properties, crs=params.crs)
        return await _items_response(request, layer, selection, kind, params, pool)

    @router.get(f"{path}/items/{{featureId}}", summary=f"{layer.title}: one feature", name=f"{layer.id}.item",
                response_class=Response, responses={200: {"content": {out.GEOJSON: {}, "text/html": {}}}})
    async def item(request: Request, featureId: str, params: Annotated[FeatureParams, Query()], conn: Connection):
        feature, etag = await features.fetch_one(conn, layer, await facts.queryables_of(conn, layer), featureId, params.crs)
        headers = {"ETag": f'"{etag}"', **out.crs_header(parse_crs(params.crs))}
        if out.output_format(request, params.f) == "html":
            return out.html(request, "item.html", layer=layer, feature=feature)
        base = out.base_url(request)
        feature["links"] = [*out.self_links(request, "json", f"Feature {featureId}"),
                            out.link(f"{base}/collections/{layer.id}", "collection", "application/json", layer.title)]
        return Response(json.dumps(feature, ensure_ascii=False), media_type=out.GEOJSON, headers=headers)


async def _items_response(request: Request, layer: Layer, selection: features.Selection, kind: str,
                          params: ItemsParams, pool: AsyncConnectionPool) -> Response:
    output = "csv" if kind == "csv" else "feature"
    matched, chunks = await features.open_stream(pool, selection, output, params.limit, params.offset,
                                                 with_count=kind in ("json", "html"))
    headers = out.crs_header(selection.crs)
    if kind == "jsonseq":
        return StreamingResponse(out.geojson_seq(chunks), media_type=out.MEDIA_TYPES["jsonseq"], headers=headers)
    if kind == "csv":
        columns = ["id", *selection.properties, "geometry"]
        return StreamingResponse(out.csv_rows(columns, chunks), media_type=out.MEDIA_TYPES["csv"], headers=headers)
    returned = max(0, min(params.limit, matched - params.offset))
    if kind == "html":
        page = [json.loads(row["feature"]) async for rows in chunks for row in rows]
        return out.html(request, "items.html", layer=layer, features=page, matched=matched, properties=selection.properties,
                        links=out.page_links(request, layer, matched, returned, params.limit, params.offset))
    head = {"type": "FeatureCollection", "numberMatched": matched, "numberReturned": returned, "timeStamp": out.now(),
            "links": out.page_links(request, layer, matched, returned, params.limit, params.offset)}
    return StreamingResponse(out.geojson_page(head, chunks), media_type=out.GEOJSON, headers=headers)


def _write_routes(router: APIRouter, layer: Layer, facts: CollectionFacts) -> None:
    path = f"/collections/{layer.id}/items"
    body_doc = Body(media_type=out.GEOJSON, description="a GeoJSON Feature")

    async def queryables(conn) -> dict:
        return await facts.queryables_of(conn, layer)

    @router.post(path, status_code=201, summary=f"{layer.title}: add a feature", name=f"{layer.id}.create",
                 response_class=Response)
    async def create(request: Request, body: Annotated[dict, body_doc], conn: Connection, principal: Editor,
                     content_crs: ContentCrs = None):
        fid, etag = await edits.create(conn, principal, layer, await queryables(conn), body, content_crs)
        location = f"{out.base_url(request)}/collections/{layer.id}/items/{fid}"
        return Response(status_code=201, headers={"Location": location, "ETag": f'"{etag}"'})

    @router.put(f"{path}/{{featureId}}", status_code=204, summary=f"{layer.title}: replace a feature",
                name=f"{layer.id}.replace", response_class=Response)
    async def replace(featureId: str, body: Annotated[dict, body_doc], conn: Connection, principal: Editor,
                      if_match: IfMatch = None, content_crs: ContentCrs = None):
        etag = await edits.replace(conn, principal, layer, await queryables(conn), featureId, body, if_match, content_crs)
        return Response(status_code=204, headers={"ETag": f'"{etag}"'})

    @router.patch(f"{path}/{{featureId}}", status_code=204, summary=f"{layer.title}: update part of a feature",
                  name=f"{layer.id}.update", response_class=Response)
    async def update(featureId: str, body: Annotated[dict, Body(media_type="application/merge-patch+json",
                                                                description="JSON merge patch of the feature")],
                     conn: Connection, principal: Editor, if_match: IfMatch = None, content_crs: ContentCrs = None):
        etag = await edits.update(conn, principal, layer, await queryables(conn), featureId, body, if_match, content_crs)
        return Response(status_code=204, headers={"ETag": f'"{etag}"'})

    @router.delete(f"{path}/{{featureId}}", status_code=204, summary=f"{layer.title}: delete a feature",
                   name=f"{layer.id}.delete", response_class=Response)
    async def delete(featureId: str, conn: Connection, principal: Editor, if_match: IfMatch = None):
        await edits.delete(conn, principal, layer, await queryables(conn), featureId, if_match)
        return Response(status_code=204)

