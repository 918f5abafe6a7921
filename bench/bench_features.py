"""OGC API Features against tipg 1.6.1 on the same PostGIS and data, and batch point-in-grid
against geopandas `sjoin`. Prints ratios; figures go to bench/RESULTS.md.

    .venv/bin/python bench/bench_features.py [--requests 40] [--concurrency 4]

Needs the demo city in the configured database (`cityops demo`) and tipg in its own venv:
    python3 -m venv .cache/bench/tipg-venv && .cache/bench/tipg-venv/bin/pip install tipg==1.6.1 uvicorn
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import orjson
import psycopg
import shapely
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script (`python bench/bench_features.py`), `bench` is not installed

from bench.servers import free_port, running  # noqa: E402
from gis.db import conninfo, open_connection  # noqa: E402
from gis.grid_index import GridIndex  # noqa: E402
from gis.settings import get_settings  # noqa: E402

OUT = ROOT / "bench" / "out"
TIPG = ROOT / ".cache/bench/tipg-venv/bin/uvicorn"
PROPERTIES = "objcode,objname,class_code,bgcode,objstate,district_code,competent_dept_name,owner_dept_name,maintainer_dept_name"
CASES = {  # name → (our query, tipg's query for the same features in the same order)
    "items?limit=1000": ("limit=1000", f"limit=1000&sortby=objcode&properties={PROPERTIES}"),
    "bbox page": ("limit=1000&bbox=118.25,33.93,118.31,33.99",
                  f"limit=1000&bbox=118.25,33.93,118.31,33.99&sortby=objcode&properties={PROPERTIES}"),
    "CQL2 filter": ("limit=1000&filter=class_code = '0305' AND objstate = '完好'",
                    f"limit=1000&filter=class_code = '0305' AND objstate = '完好'&sortby=objcode&properties={PROPERTIES}"),
}


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
    our_port, tipg_port = free_port(), free_port()
    with running("cityops", [*ours_cmd, "--port", str(our_port)], {"CITYOPS_DATABASE_URL": info}, our_port, log_dir=OUT) as ours, \
            running("tipg", [*tipg_cmd, "--port", str(tipg_port)], tipg_env, tipg_port, log_dir=OUT) as tipg:
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
    body = orjson.dumps({"points": np.column_stack([lons, lats]).tolist()})
    started = time.perf_counter()
    index = asyncio.run(load_grid_index())
    index_load_s = time.perf_counter() - started
    started = time.perf_counter()
    in_process = index.locate(lons, lats)
    engine_s = time.perf_counter() - started
    port = free_port()
    with running("cityops", [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--log-level", "warning",
                             "--port", str(port)], {"CITYOPS_DATABASE_URL": conninfo(get_settings())}, port, log_dir=OUT) as ours:
        httpx.post(f"{ours}/queries/locate", json={"points": [[lons[0], lats[0]]]}, timeout=120)  # builds the index
        started = time.perf_counter()
        response = httpx.post(f"{ours}/queries/locate", content=body, headers={"content-type": "application/json"}, timeout=300)
        api_s = time.perf_counter() - started
    answer = orjson.loads(response.content)
    hits = sum(1 for row in answer["results"] if row["bgcode"])
    reference = joined.groupby(level=0)["bgcode"].min()
    agree = sum(1 for row, ref in zip(in_process, reference) if (row["bgcode"] or "") == (ref if isinstance(ref, str) else ""))
    print(f"point-in-grid, {points:,} points ({hits:,} in a grid; geopandas {joined['bgcode'].notna().sum():,} rows; "
          f"{agree:,} answers identical)")
    print(f"  geopandas sjoin on frames in memory:          {sjoin_s:.2f} s")
    print(f"  cityops grid index (in process, same points): {engine_s:.2f} s → ratio {sjoin_s / engine_s:.2f}× "
          f"(index built once in {index_load_s:.2f} s, rebuilt only when grids change)")
    print(f"  cityops POST /queries/locate (HTTP: {len(body) / 1e6:.1f} MB JSON in, {len(response.content) / 1e6:.1f} MB out): {api_s:.2f} s "
          f"→ ratio {sjoin_s / api_s:.2f}×")
    print(f"  geopandas load grids from PostGIS + sjoin:    {load_s + sjoin_s:.2f} s → ratio vs HTTP {(load_s + sjoin_s) / api_s:.2f}×")


async def load_grid_index() -> GridIndex:
    async with await psycopg.AsyncConnection.connect(conninfo(get_settings()), row_factory=dict_row) as conn:
        return await GridIndex.load(conn)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    features_vs_tipg(args.requests, args.concurrency)
    locate_vs_geopandas(args.points)
