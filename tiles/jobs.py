"""Tile jobs, two kinds of the one job system (`gis.jobs`, table `city.job`), each with progress per tile:

- `tile_archive`: the city's WebMercatorQuad vector tiles built straight from PostGIS, or the latest
  imagery from the orthophotos' display COGs, written to one PMTiles or MBTiles file. The archive
  is written to a partial file next to its target and renamed into place, so the target is either
  absent or whole; a job whose worker died leaves at most its partial file, which the job system
  removes before the next worker builds the archive again.
- `tile_seed`: every tile of an area requested from a running server, so its cache (and a CDN in
  front) is warm. Seeding again is harmless, so a job whose worker died simply runs again.

Both start from the CLI (a job run in its process) or over HTTP (`api.routers.tile_jobs`, queued
for the workers). Over HTTP an area is checked first (`planned_area`: inside the city, at most
`CITYOPS_TILE_JOB_MAX_TILES` tiles) and an archive lands in the state folder
(`tile_archives/<folder>/`), downloadable until `CITYOPS_TILE_ARCHIVE_KEEP_HOURS` have passed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path

import httpx
import psycopg
from morecantile import Tile
from morecantile.models import LL_EPSILON
from psycopg.rows import dict_row

from gis import jobs, orthophotos
from gis.db import create_pool
from gis.errors import Conflict, InvalidInput, NotFound
from gis.settings import settings_of
from layers.live import LiveCatalogue
from tiles.aggregates import register_grid_counts
from tiles.archive import ArchiveFormat, write_archive
from tiles.cache import TileCache
from tiles.matrix_sets import WEB_MERCATOR_QUAD
from tiles.metadata import city_bounds, tilejson
from tiles.raster import RasterTiles, tile_format
from tiles.raster_metadata import raster_tilejson
from tiles.settings import TileSettings
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


def tile_count(area: Bounds, zooms: Iterable[int]) -> int:
    """How many WebMercatorQuad tiles cover `area` at `zooms`, counted without listing them (as
    morecantile's `tiles` lists them: its epsilon keeps an edge from adding a row or column)."""
    west, south, east, north = area
    total = 0
    for z in zooms:
        first = WEB_MERCATOR_QUAD.tile(west + LL_EPSILON, north - LL_EPSILON, z)
        last = WEB_MERCATOR_QUAD.tile(east - LL_EPSILON, south + LL_EPSILON, z)
        total += (abs(last.x - first.x) + 1) * (abs(last.y - first.y) + 1)
    return total


async def planned_area(conn: psycopg.AsyncConnection, bbox: Bounds | None, zooms: tuple[int, ...], *,
                       imagery: bool = False, day: date | None = None, tilesets: int = 1) -> Bounds:
    """The area a tile job started over HTTP covers (`bbox`, else the city or the imagery's extent),
    refused unless `bbox` lies inside the city and the job builds at most CITYOPS_TILE_JOB_MAX_TILES
    tiles (of each of `tilesets`: a seeding of three collections requests each tile three times)."""
    city = await _city(conn)
    if bbox is not None:
        west, south, east, north = bbox
        if not (city[0] <= west and city[1] <= south and east <= city[2] and north <= city[3]):
            raise InvalidInput(f"bbox {','.join(f'{v:g}' for v in bbox)} is not inside the city, "
                               f"{','.join(f'{v:.5f}' for v in city)} (west,south,east,north in degrees)")
        area = bbox
    elif imagery:
        if day is not None:
            await RasterTiles.require_flights_by(conn, day)
        summary = await orthophotos.mosaic_summary(conn, day)
        if not summary["flights"]:
            raise NotFound("no RGB orthophoto has been flown yet: ingest one with `cityops drone ingest`")
        area = tuple(summary["bbox"])
    else:
        area = city
    tiles, most = tile_count(area, zooms) * tilesets, settings_of(TileSettings).tile_job_max_tiles
    if tiles > most:
        raise InvalidInput(f"zoom {zooms[0]}-{zooms[-1]} over {','.join(f'{v:.5f}' for v in area)} is {tiles:,} tiles, "
                           f"over the {most:,} one job may build (CITYOPS_TILE_JOB_MAX_TILES): "
                           "ask for fewer zoom levels or a smaller bbox")
    return area


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


def archives_dir(settings) -> Path:
    """Where archives built over HTTP land, one folder each (the CLI's land where the user asked)."""
    return settings.state_dir / "tile_archives"


def served_output(settings, fmt: ArchiveFormat, imagery: bool) -> Path:
    """A new place in the state folder for an archive built over HTTP."""
    return archives_dir(settings) / uuid.uuid4().hex / f"cityops-{'imagery' if imagery else 'tiles'}.{fmt}"


def _orphans(open_rows: list[dict], settings) -> list[Path]:
    """Archive folders of the state folder that no open job writes and that are older than the keep time."""
    folder = archives_dir(settings)
    writing = {Path(row["payload"]["output"]).parent for row in open_rows}
    cutoff = time.time() - settings_of(TileSettings).tile_archive_keep_hours * 3600
    return [path for path in folder.iterdir() if path not in writing and path.stat().st_mtime < cutoff] \
        if folder.is_dir() else []


def finished_archive(row: dict, settings) -> Path:
    """The file a succeeded archive job built over HTTP wrote (a 409 while it runs, a 404 once swept);
    an archive the CLI wrote is the user's, never served."""
    output = Path(row["payload"]["output"])
    if output.parent.parent != archives_dir(settings):
        raise NotFound(f"tile archive job {row['id']} wrote a file for the command line; only archives built over "
                       "HTTP are served")
    if row["state"] != "succeeded":
        raise Conflict(f"tile archive job {row['id']} is {row['state']}; its file is ready once it has succeeded")
    if not output.is_file():
        kept = settings_of(TileSettings).tile_archive_keep_hours
        raise NotFound(f"the file of tile archive job {row['id']} is gone (files are kept {kept:g} hours)")
    return output


TILE_ARCHIVE = jobs.JobKind(ARCHIVE_KIND, run_archive, max_running=1, scratch=_scratch, orphans=_orphans)


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
