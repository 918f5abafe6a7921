"""Load: 100 connections on vector tiles and on items pages (issue 13: items ran at 2.8 req/s with
96 % errors under this load while two pool connections per request deadlocked the pool).

    .venv/bin/python bench/bench_load.py [--seconds 15] [--connections 100] [--workers 2]

Starts `cityops serve` (supervised workers) on the configured database, which must hold the demo
city (`cityops demo`), and drives it with wrk. Rate limits are switched off for the run (one
client IP sends everything). For each target it prints requests/s, p50/p99 latency and errors at
1 connection and at `--connections`, side by side, and the ratio between them: how far the server
scales under load, and whether anything fails. Figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench.servers import free_port, running
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
TARGETS = {"vector tiles z16": TILES_SCRIPT, "items pages (limit=100, bbox)": ITEMS_SCRIPT}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    settings = get_settings()
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {"CITYOPS_RATE_IP_PER_S": "0", "CITYOPS_RATE_KEY_PER_S": "0", "CITYOPS_STATE_DIR": str(settings.state_dir)}
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(args.workers)]
    with running("bench_load_server", command, env, port, log_dir=OUT, timeout_s=120) as base:
        print(f"{'target':32} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, body in TARGETS.items():
            script = OUT / f"load_{abs(hash(name))}.lua"
            script.write_text(body)
            single = wrk(base, script, 1, max(3, args.seconds // 3))
            loaded = wrk(base, script, args.connections, args.seconds)
            for connections, figures in ((1, single), (args.connections, loaded)):
                print(f"{name:32} {connections:>5} {figures['rps']:>8.1f} {figures['p50'] * 1e3:>8.1f} "
                      f"{figures['p99'] * 1e3:>8.1f} {figures['errors']:>7}")
            print(f"{'':32} ratio {args.connections} conns / 1 conn: throughput ×{loaded['rps'] / single['rps']:.2f}, "
                  f"errors {loaded['errors']} of {loaded['requests']}")


if __name__ == "__main__":
    main()
