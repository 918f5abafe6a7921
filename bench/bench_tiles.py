"""Vector tiles: cityops against tipg 1.6.1 on the same PostGIS and the same scale-10 demo city.

    CITYOPS_DATABASE_NAME=cityops_bench .venv/bin/cityops db migrate
    CITYOPS_DATABASE_NAME=cityops_bench .venv/bin/cityops demo --scale 10
    python3 -m venv .cache/bench/tipg-venv && .cache/bench/tipg-venv/bin/pip install tipg==1.6.1 uvicorn
    CITYOPS_DATABASE_NAME=cityops_bench .venv/bin/python bench/bench_tiles.py

Both servers run one uvicorn worker. The same layers are compared (components = city.component,
buildings = city.building, manhole covers = city.manhole_cover_v). Runs: (a) cold — distinct tile
URLs across z10–z17 on a freshly started server, at 1 and 10 connections (a separate URL set for
each); (b) warm — the same URLs again; (c) the slowest tile per zoom z0–z12 over every tile of
the city, cold. Prints a Markdown report (figures and ratios; nothing is asserted).

Fair cold passes: PostgreSQL (the self-managed cluster) is restarted before each server starts,
so neither server's cold pass reads shared buffers the other one warmed (the OS page cache is
shared by both and left alone). `--order cityops-first` runs cityops first, to check that the
order does not decide the ratio. `--urls-per-zoom N` shortens a run on a busy machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import morecantile
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import fetch_each_once, free_port, running  # noqa: E402
from gis.cluster import cluster_for  # noqa: E402
from gis.db import conninfo  # noqa: E402
from gis.settings import get_settings  # noqa: E402

TIPG_PYTHON = ROOT / ".cache" / "bench" / "tipg-venv" / "bin" / "python"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
LAYERS = {"components": "city.component", "buildings": "city.building", "manhole_covers": "city.manhole_cover_v"}
URLS_PER_ZOOM = 250  # per zoom and run; two runs (c=1, c=10) get disjoint halves
HIGH_ZOOMS = range(10, 18)
LOW_ZOOMS = range(0, 13)
OUT = ROOT / "bench" / "out"


def cityops_server(info: str):
    port = free_port()
    return running("cityops", [str(ROOT / ".venv" / "bin" / "uvicorn"), "api.app:create_app", "--factory", "--port", str(port),
                               "--workers", "1", "--log-level", "warning"],
                   {"CITYOPS_DATABASE_URL": info}, port, log_dir=OUT)


def tipg_server(info: str):
    params = psycopg.conninfo.conninfo_to_dict(info)
    # a Unix-socket directory as a percent-encoded host: the form both pydantic and asyncpg accept
    url = f"postgresql://{params['user']}@{quote(params['host'], safe='')}:{params['port']}/{params['dbname']}"
    port = free_port()
    return running("tipg", [str(TIPG_PYTHON), "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--workers", "1", "--log-level", "warning"],
                   {"DATABASE_URL": url, "TIPG_DB_SCHEMAS": '["city"]'}, port, log_dir=OUT)


def our_path(layer: str, tile: morecantile.Tile) -> str:
    return f"/collections/{layer}/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}"


def tipg_path(layer: str, tile: morecantile.Tile) -> str:
    return f"/collections/{LAYERS[layer]}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}"


def sample_tiles(info: str, seed: int, per_zoom: int) -> list[tuple[str, morecantile.Tile]]:
    """Distinct (layer, tile) pairs where the city is: tiles under random components, z10–z17."""
    rng = random.Random(seed)
    with psycopg.connect(info) as conn:
        points = conn.execute("SELECT ST_X(geom), ST_Y(geom) FROM city.component TABLESAMPLE SYSTEM (5) REPEATABLE (%s)", [seed]).fetchall()
    chosen: set[tuple[str, morecantile.Tile]] = set()
    for z in HIGH_ZOOMS:
        wanted = len(chosen) + per_zoom
        for _ in range(per_zoom * 20):  # the city has fewer distinct tiles than that at z10–z11
            lon, lat = rng.choice(points)
            chosen.add((rng.choice(list(LAYERS)), WEB_MERCATOR.tile(lon, lat, z)))
            if len(chosen) == wanted:
                break
    pairs = sorted(chosen, key=lambda p: (p[1].z, p[1].x, p[1].y, p[0]))
    rng.shuffle(pairs)
    return pairs


def load(base: str, paths: list[str], connections: int) -> dict:
    """wrk over the list, each path once; and the largest of the first 200 tiles."""
    figures = fetch_each_once(base, paths, connections, OUT / "paths.txt")
    figures["rps"] = len(paths) / figures.pop("seconds")
    with httpx.Client(timeout=300) as client:  # sizes, once more (served from the cache where there is one)
        sizes = [len(client.get(base + path).content) for path in paths[:200]]
    return {**figures, "max_kb": max(sizes) / 1024}


async def worst_per_zoom(base: str, path_of, bounds) -> dict[int, dict]:
    worst = {}
    async with httpx.AsyncClient(timeout=300) as client:
        for z in LOW_ZOOMS:
            times, sizes = [], []
            for tile in WEB_MERCATOR.tiles(*bounds, [z]):
                for layer in LAYERS:
                    started = time.perf_counter()
                    response = await client.get(base + path_of(layer, tile))
                    times.append(time.perf_counter() - started)
                    sizes.append(len(response.content))
            worst[z] = {"ms": max(times) * 1000, "max_kb": max(sizes) / 1024, "tiles": len(times)}
    return worst


async def dataset_sizes(base: str, bounds) -> dict[int, float]:
    """Largest dataset tile (all layers) per zoom: every city tile up to z12, the densest beyond."""
    largest = {}
    async with httpx.AsyncClient(timeout=300) as client:
        for z in range(0, 18):
            tiles = list(WEB_MERCATOR.tiles(*bounds, [z]))
            if len(tiles) > 300:
                centre = WEB_MERCATOR.tile(118.28, 33.96, z)  # the dense old town
                tiles = [morecantile.Tile(centre.x + dx, centre.y + dy, z) for dx in range(-6, 7) for dy in range(-6, 7)]
            sizes = [len((await client.get(f"{base}/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}")).content) for t in tiles]
            largest[z] = max(sizes) / 1024
    return largest


def restart_postgres() -> None:
    """Empty PostgreSQL's shared buffers before a cold pass (own cluster only)."""
    settings = get_settings()
    if not settings.uses_own_cluster:
        print("warning: CITYOPS_DATABASE_URL is set; PostgreSQL is not restarted between passes", file=sys.stderr)
        return
    cluster = cluster_for(settings)
    cluster.stop()
    cluster.start()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", choices=("tipg-first", "cityops-first"), default="tipg-first")
    parser.add_argument("--urls-per-zoom", type=int, default=URLS_PER_ZOOM)
    args = parser.parse_args()
    info = conninfo(get_settings())
    with psycopg.connect(info) as conn:
        bounds = conn.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM city.district) x").fetchone()
    pairs = sample_tiles(info, 1, 2 * args.urls_per_zoom)
    sets = {1: pairs[0::2], 10: pairs[1::2]}
    results: dict[str, dict] = {}
    servers = [("tipg", tipg_server, tipg_path), ("cityops", cityops_server, our_path)]
    if args.order == "cityops-first":
        servers.reverse()
    print(f"order {args.order}, {args.urls_per_zoom} URLs per zoom and run, load average {os.getloadavg()}", flush=True)
    for name, start, path_of in servers:
        restart_postgres()
        with start(info) as base:
            runs = {}
            for connections, pairs in sets.items():
                paths = [path_of(layer, tile) for layer, tile in pairs]
                runs[f"cold c={connections}"] = load(base, paths, connections)
                print(name, "cold", connections, runs[f"cold c={connections}"], flush=True)
            for connections, pairs in sets.items():
                paths = [path_of(layer, tile) for layer, tile in pairs]
                runs[f"warm c={connections}"] = load(base, paths, connections)
                print(name, "warm", connections, runs[f"warm c={connections}"], flush=True)
        restart_postgres()
        with start(info) as base:  # a fresh server and database: the low zooms cold
            runs["worst"] = asyncio.run(worst_per_zoom(base, path_of, bounds))
            if name == "cityops":
                runs["dataset"] = asyncio.run(dataset_sizes(base, bounds))
        results[name] = runs
    report(results)


def report(results: dict) -> None:
    ours, theirs = results["cityops"], results["tipg"]
    lines = ["| run | server | req/s | p50 ms | p95 ms | p99 ms | largest of 200 tiles KB | errors |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for run in ("cold c=1", "cold c=10", "warm c=1", "warm c=10"):
        for name, runs in (("tipg 1.6.1", theirs), ("cityops", ours)):
            r = runs[run]
            lines.append(f"| {run} | {name} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max_kb']:.0f} | {r['errors']} |")
        lines.append(f"| {run} | **ratio** | **{ours[run]['rps'] / theirs[run]['rps']:.1f}×** | {theirs[run]['p50'] / ours[run]['p50']:.1f}× | "
                     f"{theirs[run]['p95'] / ours[run]['p95']:.1f}× | {theirs[run]['p99'] / ours[run]['p99']:.1f}× | | |")
    lines += ["", "| zoom | tiles×layers | tipg worst ms | cityops worst ms | ratio | tipg largest KB | cityops largest KB | cityops dataset tile largest KB |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for z in LOW_ZOOMS:
        t, o = theirs["worst"][z], ours["worst"][z]
        lines.append(f"| {z} | {o['tiles']} | {t['ms']:.0f} | {o['ms']:.0f} | {t['ms'] / o['ms']:.1f}× | {t['max_kb']:.0f} | {o['max_kb']:.0f} | {ours['dataset'][z]:.0f} |")
    lines += ["", "cityops dataset tile (all 17 layers), largest per zoom z13–z17 (13×13 tiles around the old town): "
              + ", ".join(f"z{z} {ours['dataset'][z]:.0f} KB" for z in range(13, 18))]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_tiles.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
