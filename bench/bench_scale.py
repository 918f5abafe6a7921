"""Past one machine: nginx's shared tile cache, a streaming replica, and two workers — side by side
in one run on the same database.

    CITYOPS_DATABASE_NAME=cityops_bench .venv/bin/cityops db migrate
    CITYOPS_DATABASE_NAME=cityops_bench .venv/bin/cityops demo          # or --scale 10
    CITYOPS_DATABASE_NAME=cityops_bench .venv/bin/python bench/bench_scale.py [--seconds 10]

Starts a replica (`replicas/bench`, removed at the end), cityops A on the primary, cityops B with
its reads on the replica, cityops C with two workers, and nginx (the shipped configuration) in
front of A. Measures (a) warm tiles at 100 connections through nginx vs straight from A, and C
(2 workers) vs A (1); (b) cold tiles from the replica (B) vs from the primary (A), disjoint tile
sets of the same zooms; (c) the replica's replay lag while 1,000 rows/s are written; (d) after each
of many writes, the time until nginx, A and B all serve the new tile, and how many checks saw an
old tile after the new one. Prints a Markdown report (nothing is asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.cli.deploy import render_nginx  # noqa: E402
from bench.servers import free_port, running  # noqa: E402
from gis.cluster import cluster_for  # noqa: E402
from gis.db import conninfo  # noqa: E402
from gis.settings import get_settings  # noqa: E402

OUT = ROOT / "bench" / "out"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
REPLICA = "bench"


def cityops(name: str, info: str, *, read_url: str | None = None, workers: int = 1):
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": info, **({"CITYOPS_READ_DATABASE_URL": read_url} if read_url else {})}
    return running(name, [str(ROOT / ".venv" / "bin" / "uvicorn"), "api.app:create_app", "--factory", "--port", str(port),
                          "--workers", str(workers), "--log-level", "warning"], env, port, log_dir=OUT)


def tile_paths(info: str, seed: int, n: int, zooms=range(13, 18)) -> list[str]:
    rng = random.Random(seed)
    with psycopg.connect(info) as conn:
        points = conn.execute("SELECT ST_X(geom), ST_Y(geom) FROM city.component "
                              "TABLESAMPLE SYSTEM (5) REPEATABLE (%s)", [seed]).fetchall()
    paths: set[str] = set()
    while len(paths) < n:
        lon, lat = rng.choice(points)
        tile = WEB_MERCATOR.tile(lon, lat, rng.choice(list(zooms)))
        paths.add(f"/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}?collections=stall_sites,manhole_covers,buildings")
    return sorted(paths)


def wrk(base: str, paths: list[str], seconds: int, connections: int = 100) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(paths) + "\n")
    result = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
                             "-s", str(ROOT / "bench" / "cycle_paths.lua"), base],
                            capture_output=True, text=True, env={"PATH_LIST": listing.name}, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rps"] = figures["n"] / figures["seconds"]
    return figures


async def cold(base: str, paths: list[str], concurrency: int = 8) -> dict:
    times: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        async def one(path: str) -> None:
            async with semaphore:
                started = time.perf_counter()
                response = await client.get(path)
                response.raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await asyncio.gather(*(one(p) for p in paths))
        wall = time.perf_counter() - started
    times.sort()
    return {"n": len(times), "p50": times[len(times) // 2], "p95": times[int(len(times) * 0.95)], "tiles_per_s": len(times) / wall}


def replay_lag_under_writes(info: str, replica_info: str, seconds: int, rows_per_s: int = 1000) -> dict:
    """Insert rows_per_s alarm rows a second (10 batches) while sampling the replica's replay lag."""
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with psycopg.connect(info, autocommit=True) as conn:
            covers = [r[0] for r in conn.execute("SELECT objcode FROM city.manhole_cover_v LIMIT 500").fetchall()]
            batch = rows_per_s // 10
            while not stop.is_set():
                tick = time.monotonic()
                with conn.transaction():
                    conn.execute("INSERT INTO city.alarm (objcode, alarm_type, status, cleared_at, reading) "
                                 "SELECT c, 'overflow', 'cleared', now(), 1 FROM unnest(%s::text[]) c",
                                 [random.sample(covers, batch)])
                written[0] += batch
                time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))

    thread = threading.Thread(target=writer)
    thread.start()
    lags: list[float] = []
    try:
        with psycopg.connect(info, autocommit=True) as primary, psycopg.connect(replica_info, autocommit=True) as replica:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                lsn = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                asked = time.monotonic()
                while replica.execute("SELECT pg_last_wal_replay_lsn() < %s", [lsn]).fetchone()[0]:
                    time.sleep(0.001)
                lags.append((time.monotonic() - asked) * 1000)
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute("DELETE FROM city.alarm WHERE alarm_type = 'overflow' AND reading = 1 AND status = 'cleared' "
                         "AND raised_at > now() - interval '1 hour'")
    lags.sort()
    return {"rows_per_s": written[0] / seconds, "p50_ms": lags[len(lags) // 2], "p99_ms": lags[int(len(lags) * 0.99)],
            "max_ms": lags[-1], "samples": len(lags)}


def freshness(info: str, bases: dict[str, str], writes: int) -> dict:
    """Move a stall site out of its z16 tile and back, `writes` times; after each write poll every path
    until it serves the new tile, and keep polling a little to catch an old tile coming back."""
    with psycopg.connect(info, autocommit=True) as conn:
        sites = conn.execute("SELECT code, ST_X(geom), ST_Y(geom) FROM city.stall_site ORDER BY code LIMIT %s", [writes]).fetchall()
    worst = 0.0
    checks = stale_after_new = 0
    delays: list[float] = []
    with httpx.Client(timeout=30) as client, psycopg.connect(info, autocommit=True) as conn:
        for code, lon, lat in sites:
            tile = WEB_MERCATOR.tile(lon, lat, 16)
            path = f"/collections/stall_sites/tiles/WebMercatorQuad/16/{tile.y}/{tile.x}"
            for base in bases.values():
                client.get(base + path)  # cached everywhere
            conn.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, 0.02, 0) WHERE code = %s", [code])
            written = time.monotonic()
            fresh_at: dict[str, float] = {}
            while len(fresh_at) < len(bases) or time.monotonic() - written < max(fresh_at.values()) + 0.3:
                for name, base in bases.items():
                    response = client.get(base + path)
                    checks += 1
                    codes = set() if response.status_code == 204 else {
                        f["properties"]["code"] for layer in mapbox_vector_tile.decode(response.content).values()
                        for f in layer["features"]}
                    if code not in codes:
                        fresh_at.setdefault(name, time.monotonic() - written)
                    elif name in fresh_at:
                        stale_after_new += 1
                if time.monotonic() - written > 10:
                    break
            delays.append(max(fresh_at.values(), default=10.0))
            worst = max(worst, delays[-1])
            conn.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, -0.02, 0) WHERE code = %s", [code])
    delays.sort()
    return {"writes": len(sites), "checks": checks, "stale_after_new": stale_after_new,
            "p50_s": delays[len(delays) // 2], "worst_s": worst}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk and lag run")
    parser.add_argument("--writes", type=int, default=40, help="writes in the freshness run")
    args = parser.parse_args()
    settings = get_settings()
    info = conninfo(settings)
    cluster = cluster_for(settings)
    if REPLICA in cluster.replica_names():
        cluster.remove_replica(REPLICA)
    replica = cluster.add_replica(REPLICA)
    replica_info = replica.conninfo(settings.database_name)
    nginx_prefix = Path(tempfile.mkdtemp(prefix="cityops-nginx-"))
    results: dict = {"load": subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True).stdout.split()[:3]}
    try:
        with cityops("bench_a", info) as a, cityops("bench_b", info, read_url=replica_info) as b, \
                cityops("bench_c", info, workers=2) as c:
            port = free_port()
            config = nginx_prefix / "nginx.conf"
            config.write_text(render_nginx([a.removeprefix("http://")], listen=f"127.0.0.1:{port}",
                                           cache_dir=str(nginx_prefix / "cache"), user="root", worker_processes="1",
                                           prefix=str(nginx_prefix), daemon=False))
            with running("bench_nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(config), "-p", str(nginx_prefix)],
                         {}, port, log_dir=OUT) as nginx:
                warm = tile_paths(info, 1, 200)
                asyncio.run(cold(nginx, warm))  # fills A's cache and nginx's
                asyncio.run(cold(c, warm))
                results["warm_nginx"] = wrk(nginx, warm, args.seconds)
                results["warm_direct"] = wrk(a, warm, args.seconds)
                results["warm_two_workers"] = wrk(c, warm, args.seconds)
                replica_tiles, primary_tiles = tile_paths(info, 2, 300), tile_paths(info, 3, 300)
                results["cold_replica"] = asyncio.run(cold(b, replica_tiles))
                results["cold_primary"] = asyncio.run(cold(a, primary_tiles))
                results["lag"] = replay_lag_under_writes(info, replica_info, args.seconds)
                results["freshness"] = freshness(info, {"nginx": nginx, "A (primary)": a, "B (replica)": b}, args.writes)
    finally:
        cluster.remove_replica(REPLICA)
        shutil.rmtree(nginx_prefix, ignore_errors=True)
    report(results)


def report(r: dict) -> None:
    print(f"load average at start: {' '.join(r['load'])}\n")
    print("| warm tiles, 100 connections | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
    for key, label in [("warm_direct", "cityops, 1 worker"), ("warm_nginx", "nginx → cityops"),
                       ("warm_two_workers", "cityops, 2 workers")]:
        f = r[key]
        print(f"| {label} | {f['rps']:.0f} | {f['p50']:.1f} | {f['p99']:.1f} | {f['errors'] + f['non2xx']} |")
    print(f"\nnginx / direct: **{r['warm_nginx']['rps'] / r['warm_direct']['rps']:.1f}×**; "
          f"2 workers / 1: **{r['warm_two_workers']['rps'] / r['warm_direct']['rps']:.2f}×**\n")
    print("| cold tiles, 8 at a time | tiles/s | p50 ms | p95 ms |\n|---|---|---|---|")
    for key, label in [("cold_primary", "from the primary"), ("cold_replica", "from the replica")]:
        f = r[key]
        print(f"| {label} | {f['tiles_per_s']:.1f} | {f['p50']:.1f} | {f['p95']:.1f} |")
    print(f"\nreplica / primary: **{r['cold_replica']['tiles_per_s'] / r['cold_primary']['tiles_per_s']:.2f}×**\n")
    lag = r["lag"]
    print(f"replay lag while writing {lag['rows_per_s']:.0f} rows/s: p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, "
          f"max {lag['max_ms']:.1f} ms ({lag['samples']} samples)\n")
    f = r["freshness"]
    print(f"after {f['writes']} writes, every path (nginx, primary, replica) served the new tile within p50 "
          f"{f['p50_s']:.2f} s, worst **{f['worst_s']:.2f} s**; old tile after the new one: **{f['stale_after_new']}** "
          f"in {f['checks']:,} checks")


if __name__ == "__main__":
    main()
