"""OGC API – Tiles (vector, MVT) for every layer and for the dataset, TileJSON, the MapLibre style
and the tile matrix sets; tiles come from `tiles.service.VectorTiles`, started in the app's lifespan."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.deps import Collection
from api.extension import Extension
from layers.catalogue import Layer
from tiles.cache import CachedTile
from tiles.matrix_sets import TILE_MATRIX_SETS, get_tms
from tiles.metadata import (MVT_MEDIA_TYPE, TILESETS_VECTOR_REL, WORLD, city_bounds, style, tilejson, tiles_path,
                            tileset, tileset_summary)
from tiles.service import VectorTiles

TILES_CONF = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
CONFORMANCE = tuple(TILES_CONF + c for c in (
    "core", "tileset", "tilesets-list", "geodata-tilesets", "dataset-tilesets", "geodata-selection", "mvt", "oas30"))
# Tiles are never stale on this server, so clients revalidate with If-None-Match (a 304 costs nothing).
CACHE_CONTROL = "public, no-cache"
DATASET_TITLE = "cityops — the whole city"

TileMatrix = Annotated[int, Path(description="zoom level (tile matrix identifier)")]
TileRow = Annotated[int, Path(description="row of the tile in the tile matrix")]
TileCol = Annotated[int, Path(description="column of the tile in the tile matrix")]
FilterParam = Annotated[str | None, Query(alias="filter", description="CQL2 filter on the collection's queryables")]
FilterLang = Annotated[str | None, Query(alias="filter-lang", description="cql2-text (default) or cql2-json")]


def tile_links(layer: Layer, base_url: str) -> list[dict]:
    """Links from a collection document to its tiles (for the OGC API Features collection route)."""
    base = base_url.rstrip("/")
    return [{"rel": TILESETS_VECTOR_REL, "type": "application/json", "title": f"Vector tiles of {layer.title}",
             "href": f"{base}{tiles_path(layer.id)}"}]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _service(request: Request) -> VectorTiles:
    return request.app.state.tiles


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _tile_response(request: Request, tile: CachedTile) -> Response:
    # X-Accel-Expires '@<this second>': a proxy cache in front (deploy/nginx) keeps the tile to the end of
    # the current second at most, then revalidates by ETag; nginx's own shortest lifetime (1 s, counted
    # from a whole second) could serve a tile up to 2 s after a write. nginx strips the header.
    headers = {"ETag": tile.etag, "Cache-Control": CACHE_CONTROL, "X-Accel-Expires": f"@{int(time.time())}"}
    if _matches(request.headers.get("if-none-match"), tile.etag):
        return Response(status_code=304, headers=headers)
    if not tile.data:
        return Response(status_code=204, headers=headers)
    return Response(tile.data, media_type=MVT_MEDIA_TYPE, headers=headers)


async def _bounds(service: VectorTiles) -> tuple[float, float, float, float]:
    async with service.pool.connection() as conn:
        return await city_bounds(conn) or WORLD


def tiles_extension() -> Extension:
    router = APIRouter(tags=["OGC API Tiles"])

    @router.get("/tileMatrixSets", summary="Tile matrix sets", operation_id="getTileMatrixSetsList")
    async def tile_matrix_sets(request: Request):
        base = _base(request)
        return {"tileMatrixSets": [
            {"id": tms.id, "title": tms.title, "crs": tms.crs.srs,
             "links": [{"rel": "self", "type": "application/json", "href": f"{base}/tileMatrixSets/{tms.id}"}]}
            for tms in TILE_MATRIX_SETS.values()]}

    @router.get("/tileMatrixSets/{tileMatrixSetId}", summary="A tile matrix set", operation_id="getTileMatrixSet")
    async def tile_matrix_set(tileMatrixSetId: str):
        return Response(get_tms(tileMatrixSetId).model_dump_json(exclude_none=True), media_type="application/json")

    # -- dataset tiles: every layer in one tile ------------------------------------------------
    @router.get("/tiles", summary="Vector tilesets of the whole city", operation_id="getDatasetTileSetsList")
    async def dataset_tilesets(request: Request):
        return {"tilesets": [tileset_summary(_base(request), tms, DATASET_TITLE, None) for tms in TILE_MATRIX_SETS.values()]}

    @router.get("/tiles/{tileMatrixSetId}", summary="Dataset tileset metadata", operation_id="getDatasetTileSet")
    async def dataset_tileset(request: Request, tileMatrixSetId: str):
        service = _service(request)
        return tileset(_base(request), get_tms(tileMatrixSetId), DATASET_TITLE, service.layers(None), None, _queryables(service))

    @router.get("/tiles/{tileMatrixSetId}/tilejson.json", summary="TileJSON of the dataset", operation_id="getDatasetTileJSON")
    async def dataset_tilejson(request: Request, tileMatrixSetId: str):
        service = _service(request)
        return tilejson(_base(request), get_tms(tileMatrixSetId), DATASET_TITLE, service.layers(None), None,
                        _queryables(service), await _bounds(service))

    # HEAD too (kept out of the OpenAPI, whose operation ids must be unique): GDAL's /vsicurl/ and CDNs ask for a tile's size before reading it.
    @router.head("/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}", include_in_schema=False)
    @router.get("/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}", summary="A tile of the whole city",
                operation_id="getDatasetTile", response_class=Response,
                responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "empty tile"}, 304: {"description": "not modified"},
                           404: {"description": "no such tile matrix set, collection or tile"}})
    async def dataset_tile(request: Request, tileMatrixSetId: str, tileMatrix: TileMatrix, tileRow: TileRow, tileCol: TileCol,
                           collections: Annotated[str | None, Query(description="comma-separated collections to include")] = None,
                           filter_text: FilterParam = None, filter_lang: FilterLang = None):
        layer_ids = [c for c in (collections or "").split(",") if c]
        tile = await _service(request).tile(tileMatrixSetId, tileMatrix, tileRow, tileCol, layer_ids, filter_text, filter_lang)
        return _tile_response(request, tile)

    # -- collection tiles ------------------------------------------------------------------------
    @router.get("/collections/{collectionId}/tiles", summary="Vector tilesets of a collection", operation_id="getCollectionTileSetsList")
    async def collection_tilesets(request: Request, layer: Collection):
        return {"tilesets": [tileset_summary(_base(request), tms, layer.title, layer.id) for tms in TILE_MATRIX_SETS.values()]}

    @router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}", summary="Collection tileset metadata", operation_id="getCollectionTileSet")
    async def collection_tileset(request: Request, layer: Collection, tileMatrixSetId: str):
        service = _service(request)
        return tileset(_base(request), get_tms(tileMatrixSetId), layer.title, [layer], layer.id, _queryables(service))

    @router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json", summary="TileJSON of a collection",
                operation_id="getCollectionTileJSON")
    async def collection_tilejson(request: Request, layer: Collection, tileMatrixSetId: str):
        service = _service(request)
        return tilejson(_base(request), get_tms(tileMatrixSetId), layer.title, [layer], layer.id, _queryables(service),
                        await _bounds(service))

    @router.head("/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}", include_in_schema=False)
    @router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}",
                summary="A vector tile of a collection", operation_id="getCollectionTile", response_class=Response,
                responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "empty tile"}, 304: {"description": "not modified"},
                           404: {"description": "no such tile matrix set, collection or tile"}})
    async def collection_tile(request: Request, layer: Collection, tileMatrixSetId: str, tileMatrix: TileMatrix,
                              tileRow: TileRow, tileCol: TileCol, filter_text: FilterParam = None, filter_lang: FilterLang = None):
        tile = await _service(request).tile(tileMatrixSetId, tileMatrix, tileRow, tileCol, [layer.id], filter_text, filter_lang)
        return _tile_response(request, tile)

    # -- style -------------------------------------------------------------------------------------
    @router.get("/styles/default/style.json", summary="MapLibre style of every layer", operation_id="getDefaultStyle", tags=["Styles"])
    async def default_style(request: Request):
        service = _service(request)
        return style(_base(request), get_tms("WebMercatorQuad"), service.layers(None), await _bounds(service))

    links = (
        {"rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes", "type": "application/json", "title": "Tile matrix sets", "href": "/tileMatrixSets"},
        {"rel": TILESETS_VECTOR_REL, "type": "application/json", "title": "Vector tiles of the whole city", "href": "/tiles"},
        {"rel": "http://www.opengis.net/def/rel/ogc/1.0/styles", "type": "application/vnd.mapbox.style+json", "title": "MapLibre style", "href": "/styles/default/style.json"},
    )
    return Extension(router=router, conformance=CONFORMANCE, links=links, collection_links=(tile_links,))


def _queryables(service: VectorTiles) -> dict:
    return {layer.id: service.catalogue.queryables(layer.id) for layer in service.layers(None)}
