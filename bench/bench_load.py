"""Load: 100 connections on vector tiles, items pages, keyed reads and the wall's /live stream
(issue 13: items ran at 2.8 req/s with 96 % errors under this load while two pool connections per
request deadlocked the pool; 200 /live clients waited a median 14 s for their first event).

    .venv/bin/python -m bench.bench_load [--seconds 15] [--connections 100] [--workers 2] [--targets tiles,items,first,cursor,keyed,live]
    .venv/bin/python -m bench.bench_load --seconds 300 --targets mixed      # the 5-minute run

Starts `cityops serve` (supervised workers) on the configured database, which must hold the demo
city (`cityops demo`), and drives it with wrk. Rate limits are switched off for the run (one
client IP sends everything). For each target it prints requests/s, p50/p99 latency and errors at
1 connection and at `--connections`, side by side, and the ratio between them: how far the server
scales under load, and whether anything fails; and the 1-minute load average before and after.
`first` requests first pages of components in random bboxes and `cursor` the pages after them by
their next links' keyset cursors (read before the run), 100 features each; `keyed` reads cases with a viewer key made for the run (revoked after it); `live` opens
`--connections` /live streams at once and times each one's first event. `mixed` alternates tiles
and items pages. Figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.servers import free_port, running
from gis.db import connect
from gis.keys import create_key, revoke_key
from gis.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
# Random pages around the city centre, so the tile cache and the planner see varied requests.
ITEMS_SCRIPT = """
math.randomseed(13)
request = function()
  local x = 118.20 + math.random() * 0.15
  local y = 33.90 + math.random() * 0.12
  local path = string.format("/collections/manhole_covers/items?limit=100&bbox=%.4f,%.4f,%.4f,%.4f", x, y, x + 0.02, y + 0.02)
  return wrk.format("GET", path)
end
"""
TILES_SCRIPT = """
math.randomseed(13)
request = function()
  local col = 54290 + math.random(0, 20)
  local row = 26176 + math.random(0, 20)
  return wrk.format("GET", string.format("/collections/manhole_covers/tiles/WebMercatorQuad/16/%d/%d", row, col))
end
"""
MIXED_SCRIPT = ITEMS_SCRIPT.replace("request = function()", "local items = function()") + TILES_SCRIPT.replace(
    "math.randomseed(13)", "").replace("request = function()", "local tiles = function()") + """
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then return items() end
  return tiles()
end
"""
KEYED_SCRIPT = """
math.randomseed(13)
wrk.headers["Authorization"] = "Bearer KEY"
local states = {"reported", "filed", "dispatched", "closed"}
request = function()
  return wrk.format("GET", string.format("/cases?state=%s&limit=20&offset=%d", states[math.random(1, 4)], math.random(0, 200)))
end
"""
TARGETS = {"tiles": ("vector tiles z16", TILES_SCRIPT), "items": ("items pages (limit=100, bbox)", ITEMS_SCRIPT),
           "first": ("components first pages (limit=100, bbox)", None),
           "cursor": ("the same continued by cursor", None),
           "keyed": ("keyed reads (/cases, viewer key)", KEYED_SCRIPT), "mixed": ("tiles + items pages, alternating", MIXED_SCRIPT)}
CURSOR_PAGES = 200


def paging_scripts(base: str) -> dict[str, str]:
    """`first`: CURSOR_PAGES random first pages of components (100 features in a bbox around the
    centre, numberMatched counted); `cursor`: the page after each, by its next link's signed keyset
    cursor (no count), at the same 100 features; each requested at random. Read from the server now."""
    rng = random.Random(13)
    firsts: list[str] = []
    continued: list[str] = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(CURSOR_PAGES * 5):
            x, y = 118.22 + rng.random() * 0.10, 33.92 + rng.random() * 0.08
            first = f"/collections/components/items?limit=100&bbox={x:.4f},{y:.4f},{x + 0.02:.4f},{y + 0.02:.4f}"
            following = next((link["href"] for link in http.get(first).json()["links"] if link["rel"] == "next"), None)
            if following:  # the next link asks for 1,000 (as GDAL and QGIS read); here 100, like the first
                firsts.append(first)
                continued.append(str(httpx.URL(following).copy_set_param("limit", 100).raw_path, "ascii"))
            if len(firsts) == CURSOR_PAGES:
                break
    if not firsts:
        sys.exit("no first page around the centre has a next page: is the demo city loaded?")

    def script(paths: list[str]) -> str:
        listed = ",\n".join(f'  "{path}"' for path in paths)
        return f"""
math.randomseed(13)
local paths = {{
{listed}
}}
request = function()
  return wrk.format("GET", paths[math.random(1, #paths)])
end
"""
    return {"first": script(firsts), "cursor": script(continued)}


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(base: str, script: Path, connections: int, seconds: int) -> dict:
    threads = min(4, connections)
    text = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                           "--timeout", "30s", "-s", str(script), base], capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", text, re.M))
    parse = lambda v: _seconds(*re.match(r"([\d.]+)(\w+)", v).groups())  # noqa: E731
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), "p50": parse(latency["50"]),
            "p99": parse(latency["99"]), "errors": errors + non_2xx, "requests": requests}


async def first_events(base: str, clients: int) -> tuple[list[float], int]:
    """Open `clients` /live streams at once: (seconds to each one's first event, failed streams)."""
    async def one(http: httpx.AsyncClient) -> float | None:
        started = time.monotonic()
        try:
            async with http.stream("GET", "/live") as stream:
                if stream.status_code != 200:
                    return None
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        return time.monotonic() - started
        except httpx.HTTPError:
            return None
        return None

    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        waits = await asyncio.gather(*(one(http) for _ in range(clients)))
    return sorted(w for w in waits if w is not None), sum(w is None for w in waits)


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--targets", default="tiles,items,keyed,live", help=f"of {', '.join([*TARGETS, 'live'])}")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    settings = get_settings()
    OUT.mkdir(parents=True, exist_ok=True)
    with connect(settings) as conn:
        key, key_id = create_key(conn, "viewer", [], "bench_load")
        conn.commit()
    port = free_port()
    env = {"CITYOPS_RATE_IP_PER_S": "0", "CITYOPS_RATE_KEY_PER_S": "0", "CITYOPS_STATE_DIR": str(settings.state_dir)}
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(args.workers)]
    try:
        with running("bench_load_server", command, env, port, log_dir=OUT, timeout_s=120) as base:
            paging: dict[str, str] | None = None
            print(f"{'target':36} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  load avg")
            for target in args.targets.split(","):
                load_before = os.getloadavg()[0]
                if target == "live":
                    waits, failed = asyncio.run(first_events(base, args.connections))
                    print(f"{'/live: first event':36} {args.connections:>5} {'':>8} {_quantile(waits, 0.5) * 1e3:>8.1f} "
                          f"{_quantile(waits, 0.99) * 1e3:>8.1f} {failed:>7}  {load_before:.1f} → {os.getloadavg()[0]:.1f}")
                    continue
                name, body = TARGETS[target]
                if body is None:
                    paging = paging or paging_scripts(base)
                    body = paging[target]
                script = OUT / f"load_{target}.lua"
                script.write_text(body.replace("KEY", key))
                single = wrk(base, script, 1, max(3, min(20, args.seconds // 3)))
                loaded = wrk(base, script, args.connections, args.seconds)
                for connections, figures in ((1, single), (args.connections, loaded)):
                    print(f"{name:36} {connections:>5} {figures['rps']:>8.1f} {figures['p50'] * 1e3:>8.1f} "
                          f"{figures['p99'] * 1e3:>8.1f} {figures['errors']:>7}", end="")
                    print(f"  {load_before:.1f} → {os.getloadavg()[0]:.1f}" if connections > 1 else "")
                print(f"{'':36} ratio {args.connections} conns / 1 conn: throughput ×{loaded['rps'] / single['rps']:.2f}, "
                      f"errors {loaded['errors']} of {loaded['requests']}")
    finally:
        with connect(settings) as conn:
            revoke_key(conn, key_id)
            conn.commit()


if __name__ == "__main__":
    main()
