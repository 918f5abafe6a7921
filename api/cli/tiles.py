"""`cityops tiles seed | export`: warm a running server's tile cache, or write the city's tiles to a
PMTiles or MBTiles file for a CDN or an offline laptop. Both are jobs of the one job system
(`tiles.jobs`) run in this process: if it dies, a server's worker (or `cityops jobs work`) does the
job again."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.common import console, fail, run_guarded
from api.settings import ServerSettings
from gis.db import conninfo
from gis.settings import get_settings, settings_of
from tiles.jobs import ArchiveRequest, SeedRequest, archive_here, seed_here
from tiles.matrix_sets import WEB_MERCATOR_QUAD
from tiles.raster import tile_format

app = typer.Typer(help="Seed and export vector tiles (and the imagery).", no_args_is_help=True)


def _zooms(text: str) -> tuple[int, ...]:
    low, _, high = text.partition("-")
    try:
        zooms = tuple(range(int(low), int(high or low) + 1))
    except ValueError:
        fail(f"--zoom takes a level or a range such as 0-16, not {text!r}")
    if not zooms or zooms[0] < 0 or zooms[-1] > WEB_MERCATOR_QUAD.maxzoom:
        fail(f"--zoom {text}: levels run from 0 to {WEB_MERCATOR_QUAD.maxzoom}")
    return zooms


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        fail(f"--bbox takes west,south,east,north in degrees, not {text!r}")
    return west, south, east, north


def _run_job(description: str, run: Callable[[Callable[[int, int], None]], dict], what: str) -> dict:
    """Run a tile job here with a progress bar; its row once it has succeeded, else the reason and exit 1."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task(description, total=None)
        job = run(lambda built, total: progress.update(task, advance=built, total=total))
    if job["state"] != "succeeded":
        fail(f"{what} job {job['id']} {job['state']}: {job['error']}")
    return job


@app.command()
def seed(
    zoom: str = typer.Option("0-16", help="levels to seed, e.g. 0-16"),
    layer: list[str] = typer.Option(None, help="collections to seed (repeatable); default: the dataset tiles"),
    bbox: str = typer.Option(None, help="west,south,east,north in degrees (default: the city)"),
    server: str = typer.Option(None, help="base URL of the running server (default http://CITYOPS_HOST:CITYOPS_PORT)"),
) -> None:
    """Request every tile of the area from a running server so its cache (and a CDN in front) is warm.
    With several workers each keeps its own cache: seeding warms whichever answers."""
    listening = settings_of(ServerSettings)
    base = (server or f"http://{listening.host}:{listening.port}").rstrip("/")

    def action() -> None:
        request = SeedRequest(base, _zooms(zoom), _bbox(bbox), tuple(layer or ()))
        settings = get_settings()
        job = _run_job("seeding", lambda tell: seed_here(conninfo(settings), settings, request,
                                                         f"cli:{getpass.getuser()}", tell), "tile seed")
        console.print(f"seeded {job['result']['tiles']:,} tiles from {base}")

    run_guarded(action)


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
    orthophotos' display COGs) into one archive file, as a job run here (if this process dies, a
    server's worker builds the archive again); the file appears whole once it is written."""
    chosen = (fmt or output.suffix.lstrip(".")).lower()
    if chosen not in ("pmtiles", "mbtiles"):
        fail(f"--format must be pmtiles or mbtiles, not {chosen!r}")

    def action() -> None:
        tile_format(image_format)  # an unknown format is refused before any job exists
        request = ArchiveRequest(output, chosen, tuple(_zooms(zoom)), _bbox(bbox),
                                 tuple(layer or ()), imagery, image_format, day.date() if day else None)
        what = "imagery tiles" if imagery else "tiles"
        settings = get_settings()
        job = _run_job(f"exporting {what} to {chosen}", lambda tell: archive_here(
            conninfo(settings), settings, request, f"cli:{getpass.getuser()}", tell), "tile archive")
        console.print(f"wrote {job['result']['tiles']:,} {what} ({output.stat().st_size / 2**20:.1f} MB) to {output}")

    run_guarded(action)
