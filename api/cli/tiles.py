"""`cityops tiles seed | export`: warm a running server's tile cache, or write the city's tiles to a
PMTiles or MBTiles file for a CDN or an offline laptop."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path

import httpx
import psycopg
import typer
from psycopg.rows import dict_row
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.common import console, fail, run_guarded
from api.settings import ServerSettings
from gis import orthophotos
from gis.db import conninfo, create_pool
from gis.settings import get_settings, settings_of
from layers.live import LiveCatalogue
from tiles.aggregates import register_grid_counts
from tiles.archive import ArchiveFormat, write_archive
from tiles.cache import TileCache
from tiles.matrix_sets import WEB_MERCATOR_QUAD
from tiles.metadata import city_bounds, tilejson
from tiles.raster import RasterTiles, tile_format
from tiles.raster_metadata import raster_tilejson
from tiles.vector import build_tile

app = typer.Typer(help="Seed and export vector tiles (and the imagery).", no_args_is_help=True)
SEED_CONCURRENCY = 8


def _zooms(text: str) -> list[int]:
    low, _, high = text.partition("-")
    try:
        zooms = list(range(int(low), int(high or low) + 1))
    except ValueError:
        fail(f"--zoom takes a level or a range such as 0-16, not {text!r}")
    if not zooms or zooms[0] < 0 or zooms[-1] > WEB_MERCATOR_QUAD.maxzoom:
        fail(f"--zoom {text}: levels run from 0 to {WEB_MERCATOR_QUAD.maxzoom}")
    return zooms


def _bbox(text: str | None, city: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    if not text:
        return city
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        fail(f"--bbox takes west,south,east,north in degrees, not {text!r}")
    return west, south, east, north


async def _city(conn: psycopg.AsyncConnection) -> LiveCatalogue:
    catalogue = LiveCatalogue()
    await catalogue.reload(conn)
    return catalogue


async def _city_bounds(conn: psycopg.AsyncConnection) -> tuple[float, float, float, float]:
    bounds = await city_bounds(conn)
    if bounds is None:
        fail("the database holds no city (no districts): load one with `cityops demo`")
    return bounds


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


@app.command()
def seed(
    zoom: str = typer.Option("0-16", help="levels to seed, e.g. 0-16"),
    layer: list[str] = typer.Option(None, help="collections to seed (repeatable); default: the dataset tiles"),
    bbox: str = typer.Option(None, help="west,south,east,north in degrees (default: the city)"),
    server: str = typer.Option(None, help="base URL of the running server (default http://CITYOPS_HOST:CITYOPS_PORT)"),
) -> None:
    """Request every tile of the area from a running server so its cache (and a CDN in front) is warm.
    With several workers each keeps its own cache: seeding warms whichever answers."""
    settings = get_settings()
    listening = settings_of(ServerSettings)
    base = (server or f"http://{listening.host}:{listening.port}").rstrip("/")

    async def action() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo(settings), autocommit=True, row_factory=dict_row) as conn:
            area = _bbox(bbox, await _city_bounds(conn))
        prefixes = [f"/collections/{layer_id}/tiles" for layer_id in layer] if layer else ["/tiles"]
        urls = [f"{base}{prefix}/{WEB_MERCATOR_QUAD.id}/{t.z}/{t.y}/{t.x}"
                for prefix in prefixes for t in WEB_MERCATOR_QUAD.tiles(*area, _zooms(zoom))]
        failures: list[str] = []
        queue: asyncio.Queue[str] = asyncio.Queue()
        for url in urls:
            queue.put_nowait(url)
        with _progress() as progress:
            task = progress.add_task("seeding", total=len(urls))

            async def worker(client: httpx.AsyncClient) -> None:
                while not queue.empty():
                    url = queue.get_nowait()
                    response = await client.get(url)
                    if response.status_code not in (200, 204):
                        failures.append(f"{url}: {response.status_code} {response.text[:200]}")
                    progress.advance(task)

            try:
                async with httpx.AsyncClient(timeout=120) as client:
                    await asyncio.gather(*(worker(client) for _ in range(SEED_CONCURRENCY)))
            except httpx.HTTPError as exc:
                fail(f"cannot reach the server at {base}: {exc}")
        if failures:
            fail(f"{len(failures)} tiles failed, first: {failures[0]}")
        console.print(f"seeded {len(urls):,} tiles from {base}")

    run_guarded(lambda: asyncio.run(action()))


@app.command()
def export(
    output: Path = typer.Option(..., "-o", "--output", help="file to write (.pmtiles or .mbtiles)"),
    fmt: str = typer.Option(None, "--format", help="pmtiles or mbtiles (default: from the file's extension)"),
    zoom: str = typer.Option("0-14", help="levels to export, e.g. 0-16"),
    layer: list[str] = typer.Option(None, help="collections to include (repeatable); default: all"),
    bbox: str = typer.Option(None, help="west,south,east,north in degrees (default: the city)"),
    imagery: bool = typer.Option(False, "--imagery", help="the latest imagery (RGB orthophoto mosaic) instead of "
                                                          "vector tiles; --bbox defaults to the imagery's extent"),
    image_format: str = typer.Option("jpg", "--image-format", help="with --imagery: png, jpg or webp"),
    day: datetime = typer.Option(None, "--datetime", formats=["%Y-%m-%d"],
                                 help="with --imagery: the imagery as it was on this day"),
) -> None:
    """Build the city's WebMercatorQuad tiles straight from PostGIS (or, with --imagery, from the
    orthophotos' display COGs) into one archive file."""
    chosen = (fmt or output.suffix.lstrip(".")).lower()
    if chosen not in ("pmtiles", "mbtiles"):
        fail(f"--format must be pmtiles or mbtiles, not {chosen!r}")
    archive_format: ArchiveFormat = chosen  # type: ignore[assignment]
    settings = get_settings()
    if imagery:
        run_guarded(lambda: asyncio.run(_export_imagery(output, archive_format, zoom, bbox, image_format,
                                                        day.date() if day else None)))
        return

    async def action() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo(settings), autocommit=True, row_factory=dict_row) as conn:
            catalogue = await _city(conn)
            layers = [catalogue.get(layer_id) for layer_id in layer] if layer else list(catalogue.layers)
            await register_grid_counts(conn, catalogue.layers)  # low zooms need them even if no server ever ran
            city = await _city_bounds(conn)
            area = _bbox(bbox, city)
            wanted = list(WEB_MERCATOR_QUAD.tiles(*area, _zooms(zoom)))
            built = []
            with _progress() as progress:
                task = progress.add_task(f"exporting {archive_format}", total=len(wanted))
                for tile in wanted:
                    built.append((tile, await build_tile(conn, WEB_MERCATOR_QUAD, tile, layers)))
                    progress.advance(task)
            queryables = {lay.id: catalogue.queryables(lay.id) for lay in layers}
            metadata = tilejson("", WEB_MERCATOR_QUAD, "cityops", layers, None, queryables, area)
            metadata["minzoom"], metadata["maxzoom"] = min(t.z for t in wanted), max(t.z for t in wanted)
            metadata["center"][2] = metadata["minzoom"]
        written = write_archive(output, archive_format, built, metadata)
        console.print(f"wrote {written:,} tiles ({output.stat().st_size / 2**20:.1f} MB) to {output}")

    run_guarded(lambda: asyncio.run(action()))


async def _export_imagery(output: Path, archive_format: ArchiveFormat, zoom: str, bbox: str | None, image_format: str,
                          day: date | None) -> None:
    fmt = tile_format(image_format)
    settings = get_settings()
    pool = create_pool(settings)
    await pool.open(wait=True, timeout=30)
    try:
        async with pool.connection() as conn:
            if day is not None:
                await RasterTiles.require_flights_by(conn, day)
            summary = await orthophotos.mosaic_summary(conn, day)
        if not summary["flights"]:
            fail("no RGB orthophoto has been flown yet: ingest one with `cityops drone ingest`")
        area = _bbox(bbox, tuple(summary["bbox"]))
        wanted = list(WEB_MERCATOR_QUAD.tiles(*area, _zooms(zoom)))
        service = RasterTiles(pool, TileCache(0))
        built = []
        with _progress() as progress:
            task = progress.add_task(f"exporting imagery to {archive_format}", total=len(wanted))
            for tile in wanted:
                image = await service.mosaic_tile(WEB_MERCATOR_QUAD.id, tile.z, tile.x, tile.y, fmt, day)
                built.append((tile, image.data))
                progress.advance(task)
    finally:
        await pool.close()
    zooms = (min(t.z for t in wanted), max(t.z for t in wanted))
    metadata = raster_tilejson("cityops imagery" + (f" as of {day}" if day else ""), "", area, zooms)
    written = write_archive(output, archive_format, built, metadata, tile_format=fmt)
    console.print(f"wrote {written:,} imagery tiles ({output.stat().st_size / 2**20:.1f} MB) to {output}")
