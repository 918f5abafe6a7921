"""OGC API Features against tipg 1.6.1 on the same PostGIS and data, and batch point-in-grid
against geopandas `sjoin`. Prints ratios; figures go to bench/RESULTS.md.

    .venv/bin/python bench/bench_features.py [--requests 40] [--concurrency 4]

Needs the demo city in the configured database (`cityops demo`) and tipg in its own venv:
    python3 -m venv .cache/bench/tipg-venv && .cache/bench/tipg-venv/bin/pip install tipg==1.6.1 uvicorn
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import shapely

from gis.db import conninfo, open_connection
from gis.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
TIPG = ROOT / ".cache/bench/tipg-venv/bin/uvicorn"
PROPERTIES = "objcode,objname,class_code,bgcode,objstate,district_code,competent_dept_name,owner_dept_name,maintainer_dept_name"
CASES = {  # name → (our query, tipg's query for the same features in the same order)
    "items?limit=1000": ("limit=1000", f"limit=1000&sortby=objcode&properties={PROPERTIES}"),
    "bbox page": ("limit=1000&bbox=118.25,33.93,118.31,33.99",
                  f"limit=1000&bbox=118.25,33.93,118.31,33.99&sortby=objcode&properties={PROPERTIES}"),
    "CQL2 filter": ("limit=1000&filter=class_code = '0305' AND objstate = '完好'",
                    f"limit=1000&filter=class_code = '0305' AND objstate = '完好'&sortby=objcode&properties={PROPERTIES}"),
}


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(command: list[str], env: dict, port: int):
    process = subprocess.Popen(command + ["--port", str(port)], env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/collections", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def throughput(url: str, requests: int, concurrency: int) -> float:
    with httpx.Client(timeout=120) as client:
        client.get(url).raise_for_status()  # warm
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: client.get(url).raise_for_status(), range(requests)))
        return requests / (time.perf_counter() - started)


def ids(url: str) -> list[str]:
    return [str(f["id"]) for f in httpx.get(url, timeout=120).json()["features"]]


def features_vs_tipg(requests: int, concurrency: int) -> None:
    info = psycopg_params = conninfo(get_settings())
    socket_dir = dict(p.split("=", 1) for p in psycopg_params.split())
    tipg_url = (f"postgresql://{socket_dir.get('user', 'postgres')}@{urllib.parse.quote(socket_dir['host'], safe='')}"
                f"/{socket_dir['dbname']}")
    ours_cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--log-level", "warning"]
    tipg_cmd = [str(TIPG), "tipg.main:app", "--log-level", "warning"]
    tipg_env = {"DATABASE_URL": tipg_url, "TIPG_DB_SCHEMAS": '["city"]', "TIPG_MAX_FEATURES_PER_QUERY": "10000"}
    with server(ours_cmd, {"CITYOPS_DATABASE_URL": info}, free_port()) as ours, \
            server(tipg_cmd, tipg_env, free_port()) as tipg:
        print(f"{'case':<18} {'cityops req/s':>14} {'tipg req/s':>11} {'ratio':>6}  same features")
        for name, (our_query, tipg_query) in CASES.items():
            our_url = f"{ours}/collections/components/items?{our_query}"
            tipg_url_case = f"{tipg}/collections/city.component/items?{tipg_query}"
            same = ids(our_url) == ids(tipg_url_case)
            a, b = throughput(our_url, requests, concurrency), throughput(tipg_url_case, requests, concurrency)
            print(f"{name:<18} {a:>14.1f} {b:>11.1f} {a / b:>5.2f}×  {same} ({len(ids(our_url))} ids)")


def locate_vs_geopandas(points: int) -> None:
    with open_connection(conninfo(get_settings())) as conn:
        started = time.perf_counter()
        rows = conn.execute("SELECT bgcode, ST_AsBinary(geom) AS wkb FROM city.unit_grid").fetchall()
        grids = gpd.GeoDataFrame({"bgcode": [r["bgcode"] for r in rows]},
                                 geometry=shapely.from_wkb([bytes(r["wkb"]) for r in rows]), crs=4490)
        load_s = time.perf_counter() - started
    # planners' points lie in the city: each one at a random spot of a random unit grid's bounding box
    rng = np.random.default_rng(6)
    boxes = shapely.bounds(grids.geometry.values)[rng.integers(0, len(grids), points)]
    lons = boxes[:, 0] + rng.random(points) * (boxes[:, 2] - boxes[:, 0])
    lats = boxes[:, 1] + rng.random(points) * (boxes[:, 3] - boxes[:, 1])
    started = time.perf_counter()
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lons, lats), crs=4490)
    joined = gpd.sjoin(frame, grids, how="left", predicate="intersects")
    sjoin_s = time.perf_counter() - started
    body = {"points": np.column_stack([lons, lats]).tolist()}
    with server([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--log-level", "warning"],
                {"CITYOPS_DATABASE_URL": conninfo(get_settings())}, free_port()) as ours:
        httpx.post(f"{ours}/queries/locate", json={"points": body["points"][:100]}, timeout=120)
        started = time.perf_counter()
        answer = httpx.post(f"{ours}/queries/locate", json=body, timeout=300).json()
        api_s = time.perf_counter() - started
    hits = sum(1 for row in answer["results"] if row["bgcode"])
    print(f"point-in-grid, {points:,} points ({hits:,} in a grid; geopandas {joined['bgcode'].notna().sum():,} rows)")
    print(f"  cityops POST /queries/locate (HTTP, JSON in and out): {api_s:.2f} s")
    print(f"  geopandas sjoin on frames in memory: {sjoin_s:.2f} s → ratio {sjoin_s / api_s:.2f}×")
    print(f"  geopandas load grids from PostGIS + sjoin: {load_s + sjoin_s:.2f} s → ratio {(load_s + sjoin_s) / api_s:.2f}×")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    features_vs_tipg(args.requests, args.concurrency)
    locate_vs_geopandas(args.points)
