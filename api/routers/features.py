"""OGC API Features Parts 1–4 for every layer of the live catalogue: one set of routes whose
`{collectionId}` is resolved to a `Layer` by the `Collection` dependency, so a layer published at
run time is served at once. The OpenAPI document still lists each collection's own paths and
parameters (and write operations only where the layer is editable): `collections_openapi`
expands the generic paths per layer of the catalogue.

No `from __future__ import annotations` here: FastAPI must see the parameter types as objects.
"""

import copy
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from api import feature_responses as out
from api.deps import AnyCollection, Collection, Connection, LiveCatalogue, ReadConnection, get_catalogue, require
from api.extension import Extension
from api.feature_params import (DEFAULT_LIMIT, PAGE_MAX_LIMIT, STREAM_MAX_LIMIT, FeatureParams, ItemsParams,
                                equality_filters, items_openapi_parameters, parse_items_params)
from api.key_gate import KeyFirstRoute
from gis.crs import parse_crs
from gis.errors import InvalidInput
from gis.keys import Principal
from layers import edits, features
from layers.catalogue import Layer

TAG = "OGC API Features"
COLLECTION_PATH = "/collections/{collectionId}"
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
Catalogue = Annotated[LiveCatalogue, Depends(get_catalogue)]
# a key of a role that may write some feature; which role may write what, per table and per field, is decided in layers.edits
Editor = Annotated[Principal, Depends(require(*edits.WRITING_ROLES))]
IfMatch = Annotated[str, Header(alias="If-Match", description="the ETag of the feature as last read")]
ContentCrs = Annotated[str, Header(alias="Content-Crs", description="CRS of the body's geometry (default CRS84)")]
Format = Annotated[str, Query(pattern="^(json|html)$")]
FeatureBody = Annotated[dict, Body(media_type=out.GEOJSON, description="a GeoJSON Feature")]
WRITE_METHODS = ("post", "put", "patch", "delete")


def items_params(request: Request, layer: Collection) -> ItemsParams:
    return parse_items_params(layer, request.query_params)


def editable(layer: Collection) -> Layer:
    if not layer.editable:
        raise HTTPException(405, f"collection {layer.id!r} is read-only")
    return layer


EditableCollection = Annotated[Layer, Depends(editable)]


def features_extension() -> Extension:
    router = APIRouter(tags=[TAG], route_class=KeyFirstRoute)

    @router.get("/collections", summary="The collections (one per catalogue layer)", responses=out.JSON_OR_HTML)
    async def collections(request: Request, conn: Connection, catalogue: Catalogue, f: Format = None):
        documents = [out.collection_document(request, layer, await catalogue.extent(conn, layer),
                                             request.app.state.collection_link_providers) for layer in catalogue.layers]
        for provider in request.app.state.collection_providers:
            documents += await provider(request, conn)
        if out.output_format(request, f) == "html":
            return out.html(request, "collections.html", collections=documents)
        return {"links": out.self_links(request, "json", "Collections"), "collections": documents}

    @router.get(COLLECTION_PATH, summary="collection", name="collection", operation_id="collection",
                responses=out.JSON_OR_HTML)
    async def collection(request: Request, found: AnyCollection, conn: Connection, catalogue: Catalogue, f: Format = None):
        if not isinstance(found, Layer):
            return found  # a raster collection's document (api.routers.orthophotos)
        document = out.collection_document(request, found, await catalogue.extent(conn, found),
                                           request.app.state.collection_link_providers)
        if out.output_format(request, f) == "html":
            return out.html(request, "collection.html", collection=document)
        return document

    @router.get(f"{COLLECTION_PATH}/queryables", summary="queryable properties", name="queryables", operation_id="queryables",
                responses={200: {"content": {"application/schema+json": {}, "text/html": {}}}})
    async def queryables(request: Request, layer: Collection, catalogue: Catalogue, f: Format = None):
        schema = features.queryables_schema(layer, catalogue.queryables(layer.id), str(request.url))
        if out.output_format(request, f) == "html":
            return out.html(request, "queryables.html", layer=layer, schema=schema)
        return JSONResponse(schema, media_type="application/schema+json")

    @router.get(f"{COLLECTION_PATH}/items", summary="features", name="items", operation_id="items", response_class=Response,
                responses=GEO_RESPONSES)
    async def items(request: Request, layer: Collection, params: Annotated[ItemsParams, Depends(items_params)],
                    catalogue: Catalogue, conn: ReadConnection):
        kind = out.output_format(request, params.f)
        maximum = STREAM_MAX_LIMIT if kind in ("csv", "jsonseq") else PAGE_MAX_LIMIT
        if params.limit > maximum:
            raise InvalidInput(f"limit {params.limit} is over the maximum {maximum:,} for f={kind}")
        selection = features.select(
            layer, catalogue.queryables(layer.id), bbox=params.bbox, bbox_crs=params.bbox_crs,
            datetime_value=params.datetime, equals=equality_filters(params), cql=params.filter,
            filter_lang=params.filter_lang, filter_crs=params.filter_crs, sortby=params.sortby,
            properties=params.properties, crs=params.crs)
        return await _items_response(request, layer, selection, kind, params, conn, catalogue.paging_key)

    @router.get(f"{COLLECTION_PATH}/items/{{featureId}}", summary="one feature", name="item", operation_id="item",
                response_class=Response, responses={200: {"content": {out.GEOJSON: {}, "text/html": {}}}})
    async def item(request: Request, layer: Collection, featureId: str, params: Annotated[FeatureParams, Query()],
                   catalogue: Catalogue, conn: Connection):
        feature, etag = await features.fetch_one(conn, layer, catalogue.queryables(layer.id), featureId, params.crs)
        headers = {"ETag": f'"{etag}"', **out.crs_header(parse_crs(params.crs))}
        if out.output_format(request, params.f) == "html":
            return out.html(request, "item.html", layer=layer, feature=feature)
        base = out.base_url(request)
        feature["links"] = [*out.self_links(request, "json", f"Feature {featureId}"),
                            out.link(f"{base}/collections/{layer.id}", "collection", "application/json", layer.title)]
        return Response(json.dumps(feature, ensure_ascii=False), media_type=out.GEOJSON, headers=headers)

    _write_routes(router)
    return Extension(router=router, conformance=CONFORMANCE,
                     links=({"rel": "data", "type": "application/json", "title": "Collections", "href": "/collections"},))


async def _items_response(request: Request, layer: Layer, selection: features.Selection, kind: str,
                          params: ItemsParams, conn, paging_key: bytes) -> Response:
    headers = out.crs_header(selection.crs)
    if kind in ("jsonseq", "csv"):
        chunks = await features.open_stream(conn, selection, "csv" if kind == "csv" else "feature", params.limit,
                                            params.offset, params.cursor, paging_key=paging_key)
        if kind == "jsonseq":
            return StreamingResponse(out.geojson_seq(chunks), media_type=out.MEDIA_TYPES["jsonseq"], headers=headers)
        columns = ["id", *selection.properties, "geometry"]
        return StreamingResponse(out.csv_rows(columns, chunks), media_type=out.MEDIA_TYPES["csv"], headers=headers)
    # numberMatched costs a count of every match: given on a query's first page (where GDAL and
    # QGIS read it), not on the pages a next link's cursor continues
    page = await features.read_page(conn, selection, params.limit, params.offset, params.cursor,
                                    paging_key=paging_key, with_count=params.cursor is None)
    if kind == "html":
        return out.html(request, "items.html", layer=layer, features=[json.loads(f) for f in page.features],
                        matched=page.matched, properties=selection.properties,
                        links=out.page_links(request, layer, params.limit, params.offset, page.next_cursor))
    head = {"type": "FeatureCollection", **({"numberMatched": page.matched} if page.matched is not None else {}),
            "numberReturned": len(page.features), "timeStamp": out.now(),
            "links": out.page_links(request, layer, params.limit, params.offset, page.next_cursor,
                                    next_limit=max(params.limit, DEFAULT_LIMIT))}
    return Response(out.geojson_page(head, page.features), media_type=out.GEOJSON, headers=headers)


def _write_routes(router: APIRouter) -> None:
    path = f"{COLLECTION_PATH}/items"

    @router.post(path, status_code=201, summary="add a feature", name="create", operation_id="create", response_class=Response)
    async def create(request: Request, layer: EditableCollection, body: FeatureBody, catalogue: Catalogue,
                     conn: Connection, principal: Editor, content_crs: ContentCrs = None):
        fid, etag = await edits.create(conn, principal, layer, catalogue.queryables(layer.id), body, content_crs)
        location = f"{out.base_url(request)}/collections/{layer.id}/items/{fid}"
        return Response(status_code=201, headers={"Location": location, "ETag": f'"{etag}"'})

    @router.put(f"{path}/{{featureId}}", status_code=204, summary="replace a feature", name="replace", operation_id="replace",
                response_class=Response)
    async def replace(layer: EditableCollection, featureId: str, body: FeatureBody, catalogue: Catalogue,
                      conn: Connection, principal: Editor, if_match: IfMatch = None, content_crs: ContentCrs = None):
        etag = await edits.replace(conn, principal, layer, catalogue.queryables(layer.id), featureId, body, if_match,
                                   content_crs)
        return Response(status_code=204, headers={"ETag": f'"{etag}"'})

    @router.patch(f"{path}/{{featureId}}", status_code=204, summary="update part of a feature", name="update", operation_id="update",
                  response_class=Response)
    async def update(layer: EditableCollection, featureId: str,
                     body: Annotated[dict, Body(media_type="application/merge-patch+json",
                                                description="JSON merge patch of the feature")],
                     catalogue: Catalogue, conn: Connection, principal: Editor, if_match: IfMatch = None,
                     content_crs: ContentCrs = None):
        etag = await edits.update(conn, principal, layer, catalogue.queryables(layer.id), featureId, body, if_match,
                                  content_crs)
        return Response(status_code=204, headers={"ETag": f'"{etag}"'})

    @router.delete(f"{path}/{{featureId}}", status_code=204, summary="delete a feature", name="delete", operation_id="delete",
                   response_class=Response)
    async def delete(layer: EditableCollection, featureId: str, catalogue: Catalogue, conn: Connection,
                     principal: Editor, if_match: IfMatch = None):
        await edits.delete(conn, principal, layer, catalogue.queryables(layer.id), featureId, if_match)
        return Response(status_code=204)


def collections_openapi(schema: dict, catalogue: LiveCatalogue) -> dict:
    """The OpenAPI document with the generic Features paths expanded per collection: each layer's
    own items parameters, and write operations only where the layer is editable."""
    schema = copy.deepcopy(schema)
    paths = schema["paths"]
    generic = {path: paths.pop(path) for path in list(paths)
               if path.startswith(COLLECTION_PATH) and any(TAG in op.get("tags", ()) for op in paths[path].values())}
    for layer in catalogue.layers:
        for path, operations in generic.items():
            concrete = {}
            for method, operation in operations.items():
                if method in WRITE_METHODS and not layer.editable:
                    continue
                operation = copy.deepcopy(operation)
                operation["operationId"] = f"{layer.id}.{operation['operationId']}"
                operation["summary"] = f"{layer.title}: {operation['summary']}"
                parameters = [p for p in operation.get("parameters", []) if p["name"] != "collectionId"]
                if path.endswith("/items") and method == "get":
                    parameters += items_openapi_parameters(layer)
                operation["parameters"] = parameters
                concrete[method] = operation
            if concrete:
                paths[path.replace("{collectionId}", layer.id)] = concrete
    return schema
