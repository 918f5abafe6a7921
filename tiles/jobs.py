"""Tile jobs, two kinds of the one job system (`gis.jobs`, table `city.job`), each with progress per tile:

- `tile_archive`: the city's WebMercatorQuad vector tiles built straight from PostGIS, or the latest
  imagery from the orthophotos' display COGs, written to one PMTiles or MBTiles file. The archive
  is written to a partial file next to its target and renamed into place, so the target is either
  absent or whole; a job whose worker died leaves at most its partial file, which the job system
  removes before the next worker builds the archive again.
- `tile_seed`: every tile of an area requested from a running server, so its cache (and a CDN in
  front) is warm. Seeding again is harmless, so a job whose worker died simply runs again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import psycopg
from morecantile import Tile
from psycopg.rows import dict_row

from gis import jobs, orthophotos
from gis.db import create_pool
from gis.errors import InvalidInput, NotFound
from layers.live import LiveCatalogue
from tiles.aggregates import register_grid_counts
from tiles.archive import ArchiveFormat, write_archive
from tiles.cache import TileCache
from tiles.matrix_sets import WEB_MERCATOR_QUAD
from tiles.metadata import city_bounds, tilejson
from tiles.raster import RasterTiles, tile_format
from tiles.raster_metadata import raster_tilejson
from tiles.vector import build_tile

ARCHIVE_KIND, SEED_KIND = "tile_archive", "tile_seed"
SEED_CONCURRENCY = 8
Bounds = tuple[float, float, float, float]
Tell = Callable[[int, int], None]  # (tiles just built, tiles in all)


@dataclasses.dataclass(frozen=True)
class ArchiveRequest:
    """What to build: vector tiles of `layers` (all when empty), or with `imagery` the RGB mosaic."""

    output: Path
    format: ArchiveFormat
    zooms: tuple[int, ...]
    bbox: Bounds | None = None  # default: the city (vector) or the imagery's extent
    layers: tuple[str, ...] = ()
    imagery: bool = False
    image_format: str = "jpg"
    day: date | None = None  # imagery as it was on this day

    def as_payload(self) -> dict:
        return {"output": str(self.output), "format": self.format, "zooms": list(self.zooms),
                "bbox": list(self.bbox) if self.bbox else None, "layers": list(self.layers), "imagery": self.imagery,
                "image_format": self.image_format, "day": self.day.isoformat() if self.day else None}

    @classmethod
    def of(cls, spec: dict) -> "ArchiveRequest":
        return cls(Path(spec["output"]), spec["format"], tuple(spec["zooms"]), tuple(spec["bbox"]) if spec["bbox"] else None,
                   tuple(spec["layers"]), spec["imagery"], spec["image_format"],
                   date.fromisoformat(spec["day"]) if spec["day"] else None)


async def _city(conn: psycopg.AsyncConnection) -> Bounds:
    bounds = await city_bounds(conn)
    if bounds is None:
        raise NotFound("the database holds no city (no districts): load one with `cityops demo`")
    return bounds


class _Progress:
    def __init__(self, job: jobs.Job, total: int, tell: Tell | None):
        self.job, self.total, self.tell, self.done = job, total, tell, 0
        job.progress(0.0, done=0, total=total, phase="building tiles", force=True)

    def advance(self) -> None:
        self.done += 1
        if self.tell:
            self.tell(1, self.total)
        self.job.progress(self.done / self.total, done=self.done, force=self.done == self.total)


async def _vector(job: jobs.Job, request: ArchiveRequest, tell: Tell | None) -> tuple[list[tuple[Tile, bytes]], dict]:
    async with await psycopg.AsyncConnection.connect(job.conninfo, autocommit=True, row_factory=dict_row) as conn:
        catalogue = LiveCatalogue()
        await catalogue.reload(conn)
        layers = [catalogue.get(layer_id) for layer_id in request.layers] if request.layers else list(catalogue.layers)
        await register_grid_counts(conn, catalogue.layers)  # low zooms need them even if no server ever ran
        area = request.bbox or await _city(conn)
        wanted = list(WEB_MERCATOR_QUAD.tiles(*area, request.zooms))
        progress = _Progress(job, len(wanted), tell)
        built = []
        for tile in wanted:
            built.append((tile, await build_tile(conn, WEB_MERCATOR_QUAD, tile, layers)))
            progress.advance()
        queryables = {layer.id: catalogue.queryables(layer.id) for layer in layers}
    metadata = tilejson("", WEB_MERCATOR_QUAD, "cityops", layers, None, queryables, area)
    metadata["minzoom"], metadata["maxzoom"] = min(t.z for t in wanted), max(t.z for t in wanted)
    metadata["center"][2] = metadata["minzoom"]
    return built, metadata


async def _imagery(job: jobs.Job, settings, request: ArchiveRequest, tell: Tell | None) -> tuple[list[tuple[Tile, bytes]], dict]:
    fmt = tile_format(request.image_format)
    pool = create_pool(settings, job.conninfo)
    await pool.open(wait=True, timeout=30)
    try:
        async with pool.connection() as conn:
            if request.day is not None:
                await RasterTiles.require_flights_by(conn, request.day)
            summary = await orthophotos.mosaic_summary(conn, request.day)
        if not summary["flights"]:
            raise NotFound("no RGB orthophoto has been flown yet: ingest one with `cityops drone ingest`")
        area = request.bbox or tuple(summary["bbox"])
        wanted = list(WEB_MERCATOR_QUAD.tiles(*area, request.zooms))
        service = RasterTiles(pool, TileCache(0))
        progress = _Progress(job, len(wanted), tell)
        built = []
        for tile in wanted:
            image = await service.mosaic_tile(WEB_MERCATOR_QUAD.id, tile.z, tile.x, tile.y, fmt, request.day)
            built.append((tile, image.data))
            progress.advance()
    finally:
        await pool.close()
    zooms = (min(t.z for t in wanted), max(t.z for t in wanted))
    name = "cityops imagery" + (f" as of {request.day}" if request.day else "")
    return built, raster_tilejson(name, "", area, zooms)


def run_archive(job: jobs.Job, settings, tell: Tell | None = None) -> dict:
    request = ArchiveRequest.of(job.payload)
    build = _imagery(job, settings, request, tell) if request.imagery else _vector(job, request, tell)
    built, metadata = asyncio.run(build)
    job.progress(1.0, phase="writing the archive", force=True)
    with jobs.written_whole(job.id, request.output) as partial:
        written = write_archive(partial, request.format, built, metadata,
                                tile_format=tile_format(request.image_format) if request.imagery else "mvt")
    return {"tiles": written, "bytes": request.output.stat().st_size, "path": str(request.output)}


def _scratch(row: dict, settings) -> list[Path]:
    return jobs.partial_files(row["id"], Path(row["payload"]["output"]))


TILE_ARCHIVE = jobs.JobKind(ARCHIVE_KIND, run_archive, max_running=1, scratch=_scratch)


def archive_here(conninfo: str, settings, request: ArchiveRequest, created_by: str, tell: Tell | None = None) -> dict:
    """Build the archive as a job run in this process (the CLI): the ended job row."""
    kind = dataclasses.replace(TILE_ARCHIVE, run=lambda job, s: run_archive(job, s, tell))
    resolved = dataclasses.replace(request, output=request.output.resolve())
    return jobs.run_here(conninfo, kind, settings, lambda conn: jobs.submit(conn, ARCHIVE_KIND, resolved.as_payload(), created_by))


# -- seeding ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SeedRequest:
    """Which tiles to ask `server` for: the dataset tiles, or those of `layers`, over `bbox` (default the city)."""

    server: str
    zooms: tuple[int, ...]
    bbox: Bounds | None = None
    layers: tuple[str, ...] = ()

    def as_payload(self) -> dict:
        return {"server": self.server, "zooms": list(self.zooms), "bbox": list(self.bbox) if self.bbox else None,
                "layers": list(self.layers)}

    @classmethod
    def of(cls, spec: dict) -> "SeedRequest":
        return cls(spec["server"], tuple(spec["zooms"]), tuple(spec["bbox"]) if spec["bbox"] else None, tuple(spec["layers"]))


async def _seed(job: jobs.Job, request: SeedRequest, tell: Tell | None) -> dict:
    if request.bbox:
        area = request.bbox
    else:
        async with await psycopg.AsyncConnection.connect(job.conninfo, autocommit=True, row_factory=dict_row) as conn:
            area = await _city(conn)
    prefixes = [f"/collections/{layer_id}/tiles" for layer_id in request.layers] if request.layers else ["/tiles"]
    urls = [f"{request.server}{prefix}/{WEB_MERCATOR_QUAD.id}/{t.z}/{t.y}/{t.x}"
            for prefix in prefixes for t in WEB_MERCATOR_QUAD.tiles(*area, request.zooms)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    progress = _Progress(job, len(urls), tell)
    failures: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            url = queue.get_nowait()
            response = await client.get(url)
            if response.status_code not in (200, 204):
                failures.append(f"{url}: {response.status_code} {response.text[:200]}")
            progress.advance()

    try:
        async with httpx.AsyncClient(timeout=120) as client:
            await asyncio.gather(*(worker(client) for _ in range(SEED_CONCURRENCY)))
    except httpx.HTTPError as exc:
        raise InvalidInput(f"cannot reach the server at {request.server}: {exc}") from None
    if failures:
        raise InvalidInput(f"{len(failures)} tiles failed, first: {failures[0]}")
    return {"tiles": len(urls), "server": request.server}


def run_seed(job: jobs.Job, settings, tell: Tell | None = None) -> dict:
    return asyncio.run(_seed(job, SeedRequest.of(job.payload), tell))


TILE_SEED = jobs.JobKind(SEED_KIND, run_seed, max_running=1)


def seed_here(conninfo: str, settings, request: SeedRequest, created_by: str, tell: Tell | None = None) -> dict:
    """Seed as a job run in this process (the CLI): the ended job row."""
    kind = dataclasses.replace(TILE_SEED, run=lambda job, s: run_seed(job, s, tell))
    return jobs.run_here(conninfo, kind, settings, lambda conn: jobs.submit(conn, SEED_KIND, request.as_payload(), created_by))
