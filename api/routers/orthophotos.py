"""Orthophotos, DSMs and change maps: the catalogue (upload, replace, delete), COG downloads, raster
tiles with TileJSON, and the latest imagery as one mosaic — all also as OGC API collections with
map tilesets (`/collections/imagery`, `/collections/orthophoto-{id}`), which GDAL's OGCAPI driver,
QGIS and OpenLayers read without cityops code.

Tiles come from `tiles.raster.RasterTiles` (started with the app's services, its cache following the change
feed); ingest is synchronous (the CLI calls the same functions), so the routes that write are
plain `def`s run in the threadpool, each on one connection of its own.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Path as PathParam, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import Connection, require
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from api.routers.tiles import _matches
from drone.ingest import delete_orthophoto, ingest_orthophoto, replace_orthophoto
from gis import orthophotos
from gis.db import open_connection
from gis.errors import InvalidInput, NotFound
from gis.keys import Principal
from tiles.cache import CachedTile
from tiles.raster import RASTER_MATRIX_SETS, RasterTiles, empty_tile, media_type, raster_tms, tile_format
from tiles.raster_metadata import (COG_MEDIA_TYPE, map_tiles_path, map_tileset, map_tileset_summary,
                                   raster_collection, raster_tilejson, tile_matrix_set_both_versions)

MOSAIC_ID = orthophotos.MOSAIC_COLLECTION_ID
MOSAIC_TITLE = "最新影像 Latest imagery (every RGB orthophoto, newest on top)"
ORTHOPHOTO_COLLECTION = re.compile(r"^orthophoto-(\d{1,18})$")
KIND_TITLES = {"rgb": "正射影像 orthophoto", "dsm": "数字表面模型 DSM", "change": "变化图 change map"}
CACHE_CONTROL = "public, no-cache"  # tiles are never stale here: clients revalidate with If-None-Match
DEFAULT_ZOOMS = (10, 22)  # an orthophoto catalogued before display renditions existed

Enforcement = Annotated[Principal, Depends(require("enforcement"))]
OrthophotoId = Annotated[int, PathParam(description="id of an orthophoto, DSM or change map in the catalogue")]
DayParam = Annotated[date | None, Query(alias="datetime", description="a day (YYYY-MM-DD): the imagery as it was "
                                                                      "then, from the flights on or before it")]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _service(request: Request) -> RasterTiles:
    return request.app.state.raster_tiles


def _tile_response(request_headers: Headers, tile: CachedTile, fmt: str) -> Response:
    headers = {"ETag": tile.etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept"}
    if _matches(request_headers.get("if-none-match"), tile.etag):
        return Response(status_code=304, headers=headers)
    data = tile.data or empty_tile(fmt)
    if not data:
        return Response(status_code=204, headers=headers)
    return Response(data, media_type=media_type(fmt), headers=headers)


def _whole(path_params: dict, name: str) -> int:
    value = path_params[name]
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise InvalidInput(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"datetime must be a day (YYYY-MM-DD), not {text!r}") from None


def _path_parameters(*names: str, **query: str) -> dict:
    """OpenAPI parameters of a route that reads them itself."""
    return {"parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]
            + [{"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
               for name, text in query.items()]}


def _split_col(tile_col: str) -> tuple[int, str | None]:
    """`12` or `12.png` → (12, None) or (12, 'png')."""
    number, _, extension = tile_col.partition(".")
    if not number.isdigit():
        raise InvalidInput(f"tileCol must be a whole number (optionally with a format extension), not {tile_col!r}")
    return int(number), extension or None


def _zooms(row: dict) -> tuple[int, int]:
    if row.get("display_minzoom") is None:
        return DEFAULT_ZOOMS
    return row["display_minzoom"], row["display_maxzoom"]


def _feature(base: str, row: dict) -> dict:
    """A catalogue entry as a GeoJSON feature with links to its COG, tiles and collection."""
    properties = {k: v for k, v in row.items() if k not in ("id", "footprint", "bbox", "file_path", "display_path")}
    href = f"{base}/orthophotos/{row['id']}"
    return {"type": "Feature", "id": row["id"], "geometry": row["footprint"], "bbox": row["bbox"],
            "properties": properties,
            "links": [
                {"rel": "self", "type": "application/geo+json", "href": href},
                {"rel": "item", "type": "image/png", "templated": True,
                 "href": f"{href}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"},
                {"rel": "tilejson", "type": "application/json", "href": f"{href}/WebMercatorQuad/tilejson.json"},
                {"rel": "enclosure", "type": COG_MEDIA_TYPE, "title": "analysis COG (lossless, source CRS)",
                 "href": f"{href}/cog.tif"},
                {"rel": "collection", "type": "application/json", "href": f"{base}/collections/orthophoto-{row['id']}"},
            ]}


def _orthophoto_collection(base: str, row: dict) -> dict:
    title = f"{KIND_TITLES.get(row['kind'], row['kind'])} {row['id']}: {row['name']}"
    day = row["captured_on"].isoformat() if row["captured_on"] else None
    links = [{"rel": "enclosure", "type": COG_MEDIA_TYPE, "title": "analysis COG (lossless, source CRS)",
              "href": f"{base}/orthophotos/{row['id']}/cog.tif"},
             {"rel": "describedby", "type": "application/geo+json", "title": "catalogue entry",
              "href": f"{base}/orthophotos/{row['id']}"}]
    return raster_collection(base, f"orthophoto-{row['id']}", title,
                             f"{row['kind']} raster, {row['width']}×{row['height']} px at {row['gsd_m']:.3f} m, "
                             f"{row['source_crs']}", tuple(row["bbox"]), (day, day) if day else None, links)


async def _mosaic_summary(conn, on_day: date | None) -> dict:
    if on_day is not None:
        await RasterTiles.require_flights_by(conn, on_day)
    summary = await orthophotos.mosaic_summary(conn, on_day)
    if not summary["flights"]:
        raise NotFound("no RGB orthophoto has been flown yet, so there is no imagery mosaic")
    return summary


def _mosaic_collection(base: str, summary: dict) -> dict:
    return raster_collection(
        base, MOSAIC_ID, MOSAIC_TITLE,
        f"{summary['flights']} RGB flights, {summary['first_day']} to {summary['last_day']}; "
        "?datetime=YYYY-MM-DD shows the city as it was on a day",
        tuple(summary["bbox"]), (summary["first_day"].isoformat(), summary["last_day"].isoformat()))


async def raster_collections(request: Request, conn) -> list[dict]:
    """The raster collections for `GET /collections`: the mosaic (once a flight exists) and every orthophoto."""
    base = _base(request)
    summary = await orthophotos.mosaic_summary(conn, None)
    documents = [_mosaic_collection(base, summary)] if summary["flights"] else []
    return documents + [_orthophoto_collection(base, row) for row in await orthophotos.public_listing(conn)]


async def raster_collection_document(request: Request, conn, collection_id: str) -> dict | None:
    """`GET /collections/{collectionId}` of the mosaic or an `orthophoto-{id}`; None for any other id."""
    if collection_id == MOSAIC_ID:
        return _mosaic_collection(_base(request), await _mosaic_summary(conn, None))
    match = ORTHOPHOTO_COLLECTION.match(collection_id)
    if match is None:
        return None
    return _orthophoto_collection(_base(request), await orthophotos.public_entry(conn, int(match.group(1))))


class _RasterCollection:
    """A raster collection id resolved: the mosaic, or one catalogue entry."""

    def __init__(self, collection_id: str, row: dict | None, summary: dict | None):
        self.id, self.row, self.summary = collection_id, row, summary

    @property
    def title(self) -> str:
        return MOSAIC_TITLE if self.row is None else f"orthophoto {self.row['id']}: {self.row['name']}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return tuple((self.summary or self.row)["bbox"])

    @property
    def zooms(self) -> tuple[int, int]:
        if self.row is not None:
            return _zooms(self.row)
        minzoom, maxzoom = self.summary["minzoom"], self.summary["maxzoom"]
        return (minzoom, maxzoom) if minzoom is not None else DEFAULT_ZOOMS


def _orthophoto_id(collection_id: str, on_day: date | None) -> int:
    """The catalogue id of an `orthophoto-{id}` collection (the mosaic's id is MOSAIC_ID)."""
    match = ORTHOPHOTO_COLLECTION.match(collection_id)
    if match is None:
        raise NotFound(f"no raster collection {collection_id!r}: raster collections are {MOSAIC_ID!r} and "
                       "'orthophoto-{id}' (see GET /orthophotos)")
    if on_day is not None:
        raise InvalidInput("datetime selects flights of the imagery mosaic; one orthophoto is one flight")
    return int(match.group(1))


async def _resolve(conn, collection_id: str, on_day: date | None) -> _RasterCollection:
    if collection_id == MOSAIC_ID:
        return _RasterCollection(collection_id, None, await _mosaic_summary(conn, on_day))
    return _RasterCollection(collection_id, await orthophotos.public_entry(conn, _orthophoto_id(collection_id, on_day)),
                             None)


def _day_params(on_day: date | None) -> dict[str, str] | None:
    return {"datetime": on_day.isoformat()} if on_day else None


def orthophotos_extension() -> Extension:
    router = APIRouter(tags=["Orthophotos"], route_class=KeyFirstRoute)

    # -- the catalogue ---------------------------------------------------------------------------
    @router.get("/orthophotos", summary="Catalogue of orthophotos, DSMs and change maps (GeoJSON), newest first")
    async def list_orthophotos(request: Request, conn: Connection, kind: Literal["rgb", "dsm", "change"] | None = None):
        rows = [row for row in await orthophotos.public_listing(conn) if kind is None or row["kind"] == kind]
        return {"type": "FeatureCollection", "numberReturned": len(rows),
                "features": [_feature(_base(request), row) for row in rows]}

    @router.get("/orthophotos/{orthophoto_id}", summary="One catalogue entry")
    async def get_orthophoto(request: Request, conn: Connection, orthophoto_id: OrthophotoId):
        row = await orthophotos.public_entry(conn, orthophoto_id)
        return _feature(_base(request), {k: v for k, v in row.items() if k != "file_path"})

    @router.post("/orthophotos", status_code=201,
                 summary="Upload a GeoTIFF: validated, written as analysis and display COGs, catalogued")
    def upload_orthophoto(request: Request, response: Response, principal: Enforcement,
                          file: Annotated[UploadFile, File(description="a georeferenced raster GDAL can read")],
                          kind: Annotated[Literal["rgb", "dsm"], Form()] = "rgb",
                          captured_on: Annotated[date | None, Form()] = None,
                          name: Annotated[str | None, Form(max_length=200)] = None):
        with _uploaded(request, file) as upload, _connection(request) as conn:
            row = ingest_orthophoto(conn, request.app.state.settings, upload, kind=kind,
                                    name=name or file.filename or upload.name, captured_on=captured_on)
        response.headers["Location"] = str(request.url_for("get_orthophoto", orthophoto_id=row["id"]))
        return _feature(_base(request), row)

    @router.put("/orthophotos/{orthophoto_id}", summary="Replace an orthophoto's image (same id, kind and date); "
                                                       "its cached tiles are dropped")
    def replace(request: Request, principal: Enforcement, orthophoto_id: OrthophotoId,
                file: Annotated[UploadFile, File(description="a georeferenced raster of the same kind")]):
        with _uploaded(request, file) as upload, _connection(request) as conn:
            row = replace_orthophoto(conn, request.app.state.settings, orthophoto_id, upload)
        return _feature(_base(request), row)

    @router.delete("/orthophotos/{orthophoto_id}", status_code=204,
                   summary="Delete an orthophoto and its files (refused while a detection job refers to it)")
    def delete(request: Request, principal: Enforcement, orthophoto_id: OrthophotoId):
        with _connection(request) as conn:
            delete_orthophoto(conn, orthophoto_id)

    # HEAD too (kept out of the OpenAPI, whose operation ids must be unique): GDAL's /vsicurl/ asks for the size first, then reads byte ranges
    @router.head("/orthophotos/{orthophoto_id}/cog.tif", include_in_schema=False)
    @router.get("/orthophotos/{orthophoto_id}/cog.tif", response_class=FileResponse,
                      summary="The analysis COG (lossless, source CRS); HTTP range requests, so GDAL and QGIS read "
                              "it in place (/vsicurl/)", responses={200: {"content": {COG_MEDIA_TYPE: {}}}})
    async def download_cog(conn: Connection, orthophoto_id: OrthophotoId):
        row = await orthophotos.public_entry(conn, orthophoto_id)
        return FileResponse(row["file_path"], media_type="image/tiff", filename=f"orthophoto-{orthophoto_id}.tif",
                            content_disposition_type="inline")

    # -- tiles of one orthophoto (z/x/y, as the wall and XYZ clients ask) --------------------------
    # The tile routes read their parameters themselves (declared for the OpenAPI document only): a
    # cached tile is then a dict lookup, without FastAPI's per-parameter validation (a third of it).
    @router.get("/orthophotos/{orthophoto_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}", response_class=Response,
                summary="A raster tile of one orthophoto (png, jpg or webp; WebMercatorQuad or CGCS2000Quad)",
                openapi_extra=_path_parameters("orthophoto_id", "tileMatrixSetId", "z", "x", "y", "format"),
                responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
                           304: {"description": "not modified"}, 404: {"description": "no such orthophoto or tile"}})
    async def orthophoto_tile(request: Request):
        path = request.path_params
        fmt = tile_format(path["format"])
        tile = await _service(request).orthophoto_tile(_whole(path, "orthophoto_id"), path["tileMatrixSetId"],
                                                       _whole(path, "z"), _whole(path, "x"), _whole(path, "y"), fmt)
        return _tile_response(request.headers, tile, fmt)

    @router.get("/orthophotos/{orthophoto_id}/{tileMatrixSetId}/tilejson.json", summary="TileJSON of one orthophoto")
    async def orthophoto_tilejson(request: Request, conn: Connection, orthophoto_id: OrthophotoId,
                                  tileMatrixSetId: str, tile_format_name: Annotated[str, Query(
                                      alias="format", description="png, jpg or webp")] = "png"):
        _webmercator_only(tileMatrixSetId)
        fmt = tile_format(tile_format_name)
        row = await orthophotos.public_entry(conn, orthophoto_id)
        template = f"{_base(request)}/orthophotos/{orthophoto_id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.{fmt}"
        return raster_tilejson(row["name"], template, tuple(row["bbox"]), _zooms(row))

    # -- OGC API: raster collections with map tilesets --------------------------------------------
    @router.get("/collections/{collectionId}/map/tiles", summary="Map tilesets of a raster collection",
                tags=["OGC API Tiles (imagery)"])
    async def map_tilesets(request: Request, conn: Connection, collectionId: str, on_day: DayParam = None):
        collection = await _resolve(conn, collectionId, on_day)
        return {"links": [{"rel": "self", "type": "application/json",
                           "href": f"{_base(request)}{map_tiles_path(collectionId)}"}],
                "tilesets": [map_tileset_summary(_base(request), collection.id, collection.title, tms,
                                                 _day_params(on_day)) for tms in RASTER_MATRIX_SETS.values()]}

    @router.get("/collections/{collectionId}/map/tiles/{tileMatrixSetId}", summary="A map tileset",
                tags=["OGC API Tiles (imagery)"])
    async def map_tileset_document(request: Request, conn: Connection, collectionId: str, tileMatrixSetId: str,
                                   on_day: DayParam = None):
        tms = raster_tms(tileMatrixSetId)
        collection = await _resolve(conn, collectionId, on_day)
        return map_tileset(_base(request), collection.id, collection.title, tms, collection.bounds, collection.zooms,
                           _day_params(on_day))

    @router.get("/tileMatrixSets/{tileMatrixSetId}/tms-1-and-2.json", tags=["OGC API Tiles (imagery)"],
                summary="A raster tile matrix set with the keys of TMS 1.0 and 2.0 (GDAL 3.6 reads 1.0 only)")
    async def tile_matrix_set_both(tileMatrixSetId: str):
        return tile_matrix_set_both_versions(raster_tms(tileMatrixSetId))

    @router.get("/collections/{collectionId}/map/tiles/{tileMatrixSetId}/tilejson.json",
                summary="TileJSON of a raster collection (WebMercatorQuad only)", tags=["OGC API Tiles (imagery)"])
    async def map_tilejson(request: Request, conn: Connection, collectionId: str, tileMatrixSetId: str,
                           on_day: DayParam = None, tile_format_name: Annotated[str, Query(
                               alias="format", description="png, jpg or webp")] = "png"):
        _webmercator_only(tileMatrixSetId)
        fmt = tile_format(tile_format_name)
        collection = await _resolve(conn, collectionId, on_day)
        query = f"?datetime={on_day.isoformat()}" if on_day else ""
        template = (f"{_base(request)}{map_tiles_path(collection.id)}/WebMercatorQuad/{{z}}/{{y}}/{{x}}.{fmt}{query}")
        return raster_tilejson(collection.title, template, collection.bounds, collection.zooms)

    @router.get("/collections/{collectionId}/map/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}",
                response_class=Response, tags=["OGC API Tiles (imagery)"],
                summary="A map tile (tileCol may end in .png, .jpg or .webp; else the Accept header or f decides)",
                openapi_extra=_path_parameters("collectionId", "tileMatrixSetId", "tileMatrix", "tileRow", "tileCol",
                                               datetime="a day (YYYY-MM-DD): the imagery mosaic as it was then",
                                               f="png, jpg or webp"),
                responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
                           204: {"description": "no imagery in this JPEG tile (an empty PNG or WebP tile comes transparent)"},
                           304: {"description": "not modified"},
                           404: {"description": "no such collection or tile"}})
    async def map_tile(request: Request):
        path, query = request.path_params, request.query_params
        col, extension = _split_col(path["tileCol"])
        fmt = tile_format(extension or query.get("f"), request.headers.get("accept"))
        on_day = _day(query.get("datetime"))
        z, row, collection_id = _whole(path, "tileMatrix"), _whole(path, "tileRow"), path["collectionId"]
        service = _service(request)
        if collection_id == MOSAIC_ID:
            tile = await service.mosaic_tile(path["tileMatrixSetId"], z, col, row, fmt, on_day)
        else:
            tile = await service.orthophoto_tile(_orthophoto_id(collection_id, on_day), path["tileMatrixSetId"], z, col,
                                                 row, fmt)
        return _tile_response(request.headers, tile, fmt)

    links = ({"rel": "data", "type": "application/geo+json", "title": "Orthophoto catalogue", "href": "/orthophotos"},
             {"rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-map", "type": "application/json",
              "title": "The latest imagery as map tiles", "href": f"{map_tiles_path(MOSAIC_ID)}"})
    conformance = tuple("http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/" + c
                        for c in ("core", "tileset", "tilesets-list", "geodata-tilesets", "png", "jpeg"))
    return Extension(router=router, conformance=conformance, links=links,
                     collections=raster_collections, collection=raster_collection_document)


# What CachedRasterTiles answers: tile URLs with a format extension and no query string.
CACHED_TILE_PATHS = (
    re.compile(r"^/orthophotos/(?P<id>\d{1,18})/tiles/(?P<tms>\w+)/(?P<z>\d{1,2})/(?P<x>\d{1,10})/(?P<y>\d{1,10})"
               r"\.(?P<fmt>png|jpg|jpeg|webp)$"),
    re.compile(r"^/collections/(?:(?P<mosaic>imagery)|orthophoto-(?P<id>\d{1,18}))/map/tiles/(?P<tms>\w+)/(?P<z>\d{1,2})/"
               r"(?P<y>\d{1,10})/(?P<x>\d{1,10})\.(?P<fmt>png|jpg|jpeg|webp)$"),
)


class CachedRasterTiles:
    """ASGI middleware: a GET of a raster tile the cache holds is answered here, a dict lookup, before
    routing and FastAPI's request handling (which took half of a warm tile's time); anything else goes
    on to the routes, which answer exactly the same for a cached tile. Installed inside the hardening
    middleware (security headers, CORS and limits still apply)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            for pattern in CACHED_TILE_PATHS:
                match = pattern.match(scope["path"])
                if match is not None:
                    tile, fmt = _cached(scope["app"].state.raster_tiles, match)
                    if tile is not None:
                        return await _tile_response(Headers(scope=scope), tile, fmt)(scope, receive, send)
                    break
        await self.app(scope, receive, send)


def _cached(service: RasterTiles, match: re.Match) -> tuple[CachedTile | None, str]:
    fmt = tile_format(match["fmt"])
    z, x, y, tms_id = int(match["z"]), int(match["x"]), int(match["y"]), match["tms"]
    key = (service.mosaic_key(tms_id, z, x, y, fmt, None) if match.groupdict().get("mosaic")
           else service.orthophoto_key(int(match["id"]), tms_id, z, x, y, fmt))
    return service.cache.get(key), fmt


def _webmercator_only(tms_id: str) -> None:
    tms = raster_tms(tms_id)
    if tms.id != "WebMercatorQuad":
        raise NotFound(f"TileJSON has no CRS, so its clients read every grid as Web Mercator: it is served for "
                       f"WebMercatorQuad only, not {tms.id} (see the OGC tileset instead)")


@contextmanager
def _uploaded(request: Request, file: UploadFile) -> Iterator[Path]:
    """The request's upload copied to a staging file (removed afterwards): ingest reads a path."""
    path = orthophotos.staging_dir(request.app.state.settings) / \
        f"upload-{uuid.uuid4().hex}{Path(file.filename or '').suffix[:8]}"
    try:
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, 2**20)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _connection(request: Request):
    """One connection of its own for a synchronous write (ingest runs in this worker thread)."""
    return open_connection(request.app.state.pool.conninfo, autocommit=True)
