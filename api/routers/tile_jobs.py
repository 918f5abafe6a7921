"""Tile archives and tile seeding started over HTTP (admin key), as `cityops tiles export | seed`
start them from the command line: `POST /tile-archives` and `POST /tile-seeds` check the request
(zoom range, a bbox inside the city, at most CITYOPS_TILE_JOB_MAX_TILES tiles, known layers),
queue the job and answer 202 with it; it is polled or cancelled at `/jobs/{id}`, and a finished
archive is downloaded from `GET /tile-archives/{id}/file`.

A seeding job requests the tiles from this server, at the address the request reached it on (its
own socket, never a client-supplied host), so that server's cache is warm.

No `from __future__ import annotations`: FastAPI must see the parameter types as objects.
"""

import math
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import Connection, SyncConnection, get_sync_connection, require
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from gis import jobs
from gis.errors import InvalidInput, NotFound
from gis.keys import Principal
from tiles.archive import ArchiveFormat
from tiles.jobs import (ARCHIVE_KIND, SEED_KIND, ArchiveRequest, SeedRequest, finished_archive, planned_area,
                        served_output)
from tiles.matrix_sets import WEB_MERCATOR_QUAD

ARCHIVE_MEDIA_TYPES = {"pmtiles": "application/vnd.pmtiles", "mbtiles": "application/vnd.sqlite3"}
Zoom = Annotated[int, Field(ge=0, le=WEB_MERCATOR_QUAD.maxzoom)]
Admin = Annotated[Principal, Depends(require("admin"))]
SyncAdmin = Annotated[Principal, Depends(require("admin", connection=get_sync_connection))]


class TileArea(BaseModel):
    """Which tiles: WebMercatorQuad levels `minzoom`…`maxzoom` over `bbox` (default: the city)."""

    model_config = ConfigDict(extra="forbid")

    minzoom: Zoom = Field(0, description="first zoom level")
    maxzoom: Zoom = Field(14, description="last zoom level (at least minzoom)")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="west, south, east, north in degrees, inside the city (default: the city)")
    layers: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        [], max_length=100, description="collections whose tiles to build (default: the dataset tiles, every layer)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.maxzoom < self.minzoom:
            raise ValueError(f"maxzoom {self.maxzoom} is below minzoom {self.minzoom}")
        if self.bbox is not None:
            west, south, east, north = self.bbox
            if not all(math.isfinite(v) for v in self.bbox) or not (west < east and south < north):
                raise ValueError("bbox is west, south, east, north in degrees with west < east and south < north")
        return self

    @property
    def zooms(self) -> tuple[int, ...]:
        return tuple(range(self.minzoom, self.maxzoom + 1))


class TileArchiveBody(TileArea):
    format: ArchiveFormat = Field("pmtiles", description="pmtiles or mbtiles")
    imagery: bool = Field(False, description="the latest imagery (RGB orthophoto mosaic) instead of vector tiles; "
                                             "bbox then defaults to the imagery's extent")
    image_format: Literal["png", "jpg", "webp"] = Field("jpg", description="with imagery: the tiles' format")
    day: date | None = Field(None, description="with imagery: the imagery as it was on this day")

    @model_validator(mode="after")
    def _imagery_options(self):
        if self.imagery and self.layers:
            raise ValueError("layers choose vector tiles; an imagery archive holds the mosaic only")
        if not self.imagery and self.day is not None:
            raise ValueError("day goes with imagery: true")
        return self


class TileSeedBody(TileArea):
    maxzoom: Zoom = Field(16, description="last zoom level (at least minzoom)")


def _known_layers(request: Request, layers: list[str]) -> tuple[str, ...]:
    catalogue = request.app.state.catalogue
    try:
        return tuple(catalogue.get(layer_id).id for layer_id in layers)
    except NotFound as exc:
        raise InvalidInput(str(exc)) from None


def _own_address(request: Request) -> str:
    """This server as the request reached it: the address of its own socket."""
    host, port = request.scope.get("server") or (None, None)
    if not host or port is None:
        raise InvalidInput("this server listens on no TCP port to request its own tiles from; seed it with "
                           "`cityops tiles seed --server URL`")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _job_body(row: dict) -> dict:
    """The job row as the API shows it: no server paths; a link to the archive once it is there."""
    links = [{"rel": "monitor", "href": f"/jobs/{row['id']}", "type": "application/json"}]
    if row["kind"] == ARCHIVE_KIND and row["state"] == "succeeded":
        links.append({"rel": "enclosure", "href": f"/tile-archives/{row['id']}/file",
                      "type": ARCHIVE_MEDIA_TYPES[row["payload"]["format"]]})
    request = {k: v for k, v in row["payload"].items() if k not in ("output", "server")}
    result = {k: v for k, v in (row["result"] or {}).items() if k not in ("path", "server")} or None
    return jsonable_encoder({**{k: v for k, v in row.items() if k not in ("payload", "result", "worker")},
                             "request": request, "result": result, "links": links})


async def _queue(request: Request, conn, kind: str, payload: dict, principal: Principal) -> JSONResponse:
    row = await (await conn.execute(jobs.SUBMIT_SQL, jobs.submit_params(kind, payload, principal.name))).fetchone()
    request.app.state.workers.wake()
    return JSONResponse(_job_body(row), status_code=202, headers={"Location": f"/jobs/{row['id']}"})


def tile_jobs_extension() -> Extension:
    router = APIRouter(tags=["Background jobs"], route_class=KeyFirstRoute)

    @router.post("/tile-archives", status_code=202,
                 summary="Build a PMTiles or MBTiles archive of the city's tiles (or imagery) as a background job")
    async def post_tile_archive(request: Request, body: TileArchiveBody, conn: Connection, principal: Admin):
        layers = _known_layers(request, body.layers)
        await planned_area(conn, body.bbox, body.zooms, imagery=body.imagery, day=body.day)
        archive = ArchiveRequest(served_output(request.app.state.settings, body.format, body.imagery), body.format,
                                 body.zooms, body.bbox, layers, body.imagery, body.image_format, body.day)
        return await _queue(request, conn, ARCHIVE_KIND, archive.as_payload(), principal)

    @router.get("/tile-archives/{job_id}/file", summary="The file of a succeeded tile archive job",
                response_class=FileResponse)
    def get_tile_archive(request: Request, job_id: int, conn: SyncConnection, _: SyncAdmin):
        row = jobs.get(conn, job_id, ARCHIVE_KIND)
        if row is None:
            raise NotFound(f"no tile archive job with id {job_id}")
        path = finished_archive(row, request.app.state.settings)
        return FileResponse(path, media_type=ARCHIVE_MEDIA_TYPES[row["payload"]["format"]], filename=path.name)

    @router.post("/tile-seeds", status_code=202,
                 summary="Request every tile of an area from this server as a background job, so its cache is warm")
    async def post_tile_seed(request: Request, body: TileSeedBody, conn: Connection, principal: Admin):
        layers = _known_layers(request, body.layers)
        await planned_area(conn, body.bbox, body.zooms, tilesets=max(1, len(layers)))
        seed = SeedRequest(_own_address(request), body.zooms, body.bbox, layers)
        return await _queue(request, conn, SEED_KIND, seed.as_payload(), principal)

    return Extension(router=router)
