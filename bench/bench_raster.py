"""Orthophoto tiles: cityops against titiler.core, side by side in one run (issue 15).

    .venv/bin/python bench/bench_raster.py [--size 8000] [--keep]

1. Writes a synthetic 8000 × 8000 px RGB orthophoto at 0.10 m in EPSG:4548 (a plain tiled
   GeoTIFF, as photogrammetry delivers it) under .cache/bench/raster/.
2. Ingest: `cityops drone ingest`'s function (analysis COG + display COG + catalogue row) against
   `rio cogeo create` of the same file (its default profile), taking turns (--ingest-rounds), and
   the web-optimized JPEG COG titiler serves (`rio cogeo create --web-optimized --cog-profile jpeg`).
3. Serving: one uvicorn worker each — cityops on its own bench database, titiler.core's minimal
   app (`TilerFactory()`, the project's own titiler-core) on the JPEG COG — and a full-screen
   viewport (9 × 7 tiles of 256 px, PNG, 8 requests at a time by wrk) at the zoom where the image
   fills the screen and ±2: titiler, cityops cold (first request of each tile), cityops warm (the
   same viewport again, from the tile cache). Only the screen's tiles that meet the image are
   asked for, as a map client reading the TileJSON bounds does (--whole-screen: all 63, the
   others answering 404 on both servers). Then a viewport over the seams of 50 flights' mosaic.

Prints a Markdown report; nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import fetch_each_once, free_port, running  # noqa: E402
from drone.ingest import delete_orthophoto, ingest_orthophoto  # noqa: E402
from gis import migrate, provision  # noqa: E402
from gis.db import open_connection  # noqa: E402
from gis.settings import Settings  # noqa: E402

WEB = morecantile.tms.get("WebMercatorQuad")
WORK = ROOT / ".cache" / "bench" / "raster"
OUT = ROOT / "bench" / "out"
DB_NAME = "cityops_bench_raster"
ORIGIN = (618_000.0, 3_756_000.0)  # EPSG:4548, Suqian
GSD = 0.10
SCREEN = (9, 7)  # tiles: 2304 × 1792 px
CONCURRENCY = 8
TITILER_APP = '''
from fastapi import FastAPI
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory
app = FastAPI()
app.include_router(TilerFactory().router)
add_exception_handlers(app, DEFAULT_STATUS_CODES)
'''


def write_source(path: Path, size: int, origin: tuple[float, float] = ORIGIN, seed: int = 7) -> None:
    """A photo-like texture (fields, roofs, roads) written in strips so memory stays bounded."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (3, size // 64 + 2, size // 64 + 2)).astype("float32")
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:4548",
                   transform=Affine(GSD, 0, origin[0], 0, -GSD, origin[1]), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate")
    strip = 512
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, strip):
            rows = min(strip, size - top)
            yy = (np.arange(top, top + rows) / 64)[:, None]
            xx = (np.arange(size) / 64)[None, :]
            y0, x0 = yy.astype(int), xx.astype(int)
            fy, fx = yy - y0, xx - x0
            block = np.empty((3, rows, size), "uint8")
            for band in range(3):
                c = coarse[band]
                smooth = (c[y0, x0] * (1 - fx) * (1 - fy) + c[y0, x0 + 1] * fx * (1 - fy)
                          + c[y0 + 1, x0] * (1 - fx) * fy + c[y0 + 1, x0 + 1] * fx * fy)
                detail = rng.normal(0, 12, (rows, size))
                roofs = ((np.arange(size)[None, :] // 37 + np.arange(top, top + rows)[:, None] // 53) % 7 == 0) * 60
                block[band] = np.clip(smooth + detail + roofs, 0, 255)
            dst.write(block, window=rasterio.windows.Window(0, top, size, rows))


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def fill_zoom(bounds_lnglat: tuple[float, float, float, float]) -> int:
    """The zoom at which the image's width is closest to the screen's."""
    west, south, east, north = bounds_lnglat
    metres = WEB.xy(east, south)[0] - WEB.xy(west, south)[0]
    misfit = {z: abs(math.log2(metres / WEB.matrix(z).cellSize / (SCREEN[0] * 256))) for z in range(10, 23)}
    return min(misfit, key=misfit.get)


def viewport(centre: tuple[float, float], z: int) -> list[morecantile.Tile]:
    middle = WEB.tile(*centre, z)
    return [morecantile.Tile(middle.x + dx, middle.y + dy, z)
            for dy in range(-(SCREEN[1] // 2), SCREEN[1] // 2 + 1) for dx in range(-(SCREEN[0] // 2), SCREEN[0] // 2 + 1)]


def in_bounds(tiles: list[morecantile.Tile], bounds: tuple[float, float, float, float]) -> list[morecantile.Tile]:
    """The tiles of a screen a map client asks for: those meeting the TileJSON `bounds` (MapLibre asks
    for no tile outside a source's bounds)."""
    west, south, east, north = bounds
    return [t for t in tiles if (b := WEB.bounds(t)).left < east and b.right > west and b.bottom < north and b.top > south]


def load(base: str, paths: list[str]) -> tuple[float, int]:
    """Seconds to fetch every path once, CONCURRENCY at a time (wrk); and how many answered 2xx."""
    figures = fetch_each_once(base, paths, CONCURRENCY, OUT / "raster_paths.txt", threads=1)
    return figures["seconds"], min(len(paths), figures["n"]) - figures["errors"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="image width and height in px")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and files")
    parser.add_argument("--flights", type=int, default=50, help="flights in the mosaic run (0: skip it)")
    parser.add_argument("--rounds", type=int, default=3, help="viewport rounds, each on freshly started servers")
    parser.add_argument("--ingest-rounds", type=int, default=2, help="ingests, each between two rio cogeo runs")
    parser.add_argument("--whole-screen", action="store_true",
                        help="request all 63 tiles of the screen, those outside the image too (404 on both servers)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    source = WORK / f"ortho-{args.size}.tif"
    if not source.exists():
        print(f"writing the {args.size}² source …", file=sys.stderr)
        write_source(source, args.size)
    rio = str(ROOT / ".venv" / "bin" / "rio")
    settings = Settings()
    provision.start_server(settings)
    provision.drop_database(settings, DB_NAME)
    info = provision.create_database(settings, DB_NAME)
    migrate.upgrade(info)

    plain = WORK / "rio-cogeo-default.tif"
    jpeg = WORK / "rio-cogeo-web-jpeg.tif"
    t_jpeg, _ = timed(lambda: subprocess.run([rio, "cogeo", "create", str(source), str(jpeg), "--web-optimized",
                                              "--cog-profile", "jpeg", "--quiet"], check=True))
    # rio cogeo and the ingest take turns (the load of other work on the machine drifts): each ingest is
    # set against the mean of the rio cogeo runs just before and after it
    t_plains, t_ingests, row = [], [], None
    with open_connection(info, autocommit=True) as conn:
        for _ in range(args.ingest_rounds):
            t_plains.append(timed(lambda: subprocess.run([rio, "cogeo", "create", str(source), str(plain), "--quiet"],
                                                         check=True))[0])
            if row is not None:
                delete_orthophoto(conn, row["id"])
            t, row = timed(lambda: ingest_orthophoto(conn, settings, source, kind="rgb", name="bench", captured_on=None))
            t_ingests.append(t)
        t_plains.append(timed(lambda: subprocess.run([rio, "cogeo", "create", str(source), str(plain), "--quiet"],
                                                     check=True))[0])
    ingest_ratios = [t / ((before + after) / 2) for t, before, after in zip(t_ingests, t_plains, t_plains[1:])]
    peak_mib = _peak_rss_mib()

    west, south, east, north = row["bbox"]
    centre = ((west + east) / 2, (south + north) / 2)
    z_fill = fill_zoom((west, south, east, north))
    zooms = [z_fill - 2, z_fill, z_fill + 2]
    env = {"CITYOPS_DATABASE_URL": info, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": "200"}
    titiler_module = WORK / "titiler_minimal.py"
    titiler_module.write_text(TITILER_APP)
    uvicorn = str(ROOT / ".venv" / "bin" / "uvicorn")
    runs: dict[int, list[tuple]] = {z: [] for z in zooms}
    flight_ids, t_ingest_flights = ingest_flights(info, settings, args.flights) if args.flights else ([], 0.0)
    mosaic_runs: list[tuple[float, int, float, float]] = []  # cold, tiles, warm, the single's cold that round
    # Both servers start afresh each round (empty tile cache, cold GDAL block cache) and take turns
    # going first, so a burst of load from other work does not fall on one of them only.
    for round_no in range(args.rounds):
        cityops_port, titiler_port = free_port(), free_port()
        with running("bench_raster_cityops", [uvicorn, "api.app:create_app", "--factory", "--port", str(cityops_port),
                                              "--workers", "1", "--log-level", "warning"], env, cityops_port,
                     log_dir=OUT) as ours, \
             running("bench_raster_titiler", [uvicorn, "titiler_minimal:app", "--app-dir", str(WORK), "--port",
                                              str(titiler_port), "--workers", "1", "--log-level", "warning"],
                     {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": "200"}, titiler_port,
                     log_dir=OUT, health_path="/docs") as theirs:
            for z in zooms:
                tiles = viewport(centre, z) if args.whole_screen else in_bounds(viewport(centre, z), row["bbox"])
                titiler_paths = [f"/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={jpeg}" for t in tiles]
                ours_paths = [f"/orthophotos/{row['id']}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png" for t in tiles]
                if round_no % 2:
                    cold = load(ours, ours_paths)
                    titiler = load(theirs, titiler_paths)
                else:
                    titiler = load(theirs, titiler_paths)
                    cold = load(ours, ours_paths)
                warm = load(ours, ours_paths)
                runs[z].append((*titiler, *cold, *warm))
            if flight_ids:
                mosaic_runs.append((*mosaic_viewport(ours), runs[MOSAIC_ZOOM][-1][2] if MOSAIC_ZOOM in runs else math.nan))
    results = [(z, *(statistics.median(r[i] for r in runs[z]) for i in range(6))) for z in zooms]

    print("## Orthophoto tiles and ingest (issue 15)\n")
    print(f"Command: `.venv/bin/python bench/bench_raster.py --size {args.size} --flights {args.flights} "
          f"--rounds {args.rounds} --ingest-rounds {args.ingest_rounds}{' --whole-screen' if args.whole_screen else ''}` "
          f"(medians of {args.rounds} rounds)\n")
    print(f"Source: {args.size} × {args.size} px RGB at {GSD} m in EPSG:4548 ({source.stat().st_size / 2**20:.0f} MiB "
          f"tiled DEFLATE GeoTIFF). Viewport: {SCREEN[0]} × {SCREEN[1]} PNG tiles centred on the image, "
          f"{'all of them' if args.whole_screen else 'those meeting its bounds'}, {CONCURRENCY} at a time (wrk); "
          f"z{z_fill} is where it fills the screen.\n")
    print("| zoom | titiler.core, rio-cogeo web-optimized JPEG COG | cityops cold | cityops warm (cache) | "
          "cold / titiler | cold / warm |")
    print("|---|---|---|---|---|---|")
    for z, t_titiler, ok_t, t_cold, ok_c, t_warm, ok_w in results:
        print(f"| z{z} | {t_titiler:.2f} s ({ok_t:.0f} tiles) | {t_cold:.2f} s ({ok_c:.0f}) | {t_warm:.3f} s ({ok_w:.0f}) | "
              f"**{t_cold / t_titiler:.2f}** | **{t_cold / t_warm:.0f}×** |")
    print()
    print("| ingest of the same file | seconds | ratio to `rio cogeo create` |")
    print("|---|---|---|")
    t_plain = statistics.median(t_plains)
    print(f"| `rio cogeo create` (default DEFLATE profile), {len(t_plains)} runs | "
          f"{' / '.join(f'{t:.1f}' for t in t_plains)} | 1.00 |")
    print(f"| `rio cogeo create --web-optimized --cog-profile jpeg` | {t_jpeg:.1f} | {t_jpeg / t_plain:.2f} |")
    print(f"| cityops ingest: analysis COG + display COG + catalogue row, each between two rio runs | "
          f"{' / '.join(f'{t:.1f}' for t in t_ingests)} | **{' / '.join(f'{r:.2f}' for r in ingest_ratios)}** |")
    print(f"\nFiles: analysis COG {row['file_bytes'] / 2**20:.1f} MiB, display COG {row['display_bytes'] / 2**20:.1f} MiB "
          f"(zooms {row['display_minzoom']}–{row['display_maxzoom']}), titiler's JPEG COG "
          f"{jpeg.stat().st_size / 2**20:.1f} MiB. Peak RSS of the bench process after ingest: {peak_mib:.0f} MiB.")
    if mosaic_runs:
        ratios = [cold / single for cold, _, _, single in mosaic_runs]
        print(f"\nMosaic: {args.flights} overlapping flights of {FLIGHT_PX} × {FLIGHT_PX} px in a "
              f"{FLIGHT_GRID[0]} × {FLIGHT_GRID[1]} grid, {FLIGHT_STEP_M:.0f} m apart (ingested in {t_ingest_flights:.0f} s); "
              f"a z{MOSAIC_ZOOM} viewport over their seams (`/collections/imagery/map/tiles/…`) each round, cold: "
              f"{' / '.join(f'{r[0]:.2f}' for r in mosaic_runs)} s ({mosaic_runs[0][1]} tiles), warm "
              f"{' / '.join(f'{r[2]:.3f}' for r in mosaic_runs)} s; the single orthophoto's z{MOSAIC_ZOOM} viewport "
              f"cold in the same rounds: {' / '.join(f'{r[3]:.2f}' for r in mosaic_runs)} s. **Mosaic / single: "
              f"{' / '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}** (target ≤ 1.5).")
    if not args.keep:
        with open_connection(info, autocommit=True) as conn:
            for orthophoto_id in (row["id"], *flight_ids):
                delete_orthophoto(conn, orthophoto_id)
        provision.drop_database(settings, DB_NAME)
        for path in (plain, jpeg):
            path.unlink(missing_ok=True)
        shutil.rmtree(WORK / "__pycache__", ignore_errors=True)


FLIGHT_PX = 800
FLIGHT_STEP_M = 60.0
FLIGHT_GRID = (10, 5)
FLIGHTS_ORIGIN = (ORIGIN[0] + 2000, ORIGIN[1])  # away from the single orthophoto
MOSAIC_ZOOM = 20


def ingest_flights(info: str, settings: Settings, flights: int) -> tuple[list[int], float]:
    """Overlapping flights (newer ones east and south); their ids and the seconds their ingest took."""
    from datetime import date, timedelta

    ingest_start = time.perf_counter()
    ids = []
    with open_connection(info, autocommit=True) as conn:
        for i in range(flights):
            col, row = i % FLIGHT_GRID[0], i // FLIGHT_GRID[0]
            origin = (FLIGHTS_ORIGIN[0] + col * FLIGHT_STEP_M, FLIGHTS_ORIGIN[1] - row * FLIGHT_STEP_M)
            path = WORK / f"flight-{i}.tif"
            write_source(path, FLIGHT_PX, origin, seed=100 + i)
            ids.append(ingest_orthophoto(conn, settings, path, kind="rgb", name=f"flight {i}",
                                         captured_on=date(2026, 1, 1) + timedelta(days=i))["id"])
            path.unlink()
    return ids, time.perf_counter() - ingest_start


def mosaic_viewport(base: str) -> tuple[float, int, float]:
    """A z20 viewport over the flights' seams: (cold seconds, tiles answered, warm seconds)."""
    from pyproj import Transformer

    middle = FLIGHT_GRID[0] * FLIGHT_STEP_M / 2, FLIGHT_GRID[1] * FLIGHT_STEP_M / 2
    lon, lat = Transformer.from_crs("EPSG:4548", "EPSG:4326", always_xy=True).transform(
        FLIGHTS_ORIGIN[0] + middle[0], FLIGHTS_ORIGIN[1] - middle[1])
    paths = [f"/collections/imagery/map/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}.png"
             for t in viewport((lon, lat), MOSAIC_ZOOM)]
    t_cold, ok = load(base, paths)
    t_warm, _ = load(base, paths)
    return t_cold, ok, t_warm


def _peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
