"""Collections read by other departments' clients with no options, against this checkout
and against the code before keyset paging (offset next links, a count per page), side by side on
the same database in the same run. Prints seconds and ratios; figures go to bench/RESULTS.md.

    .venv/bin/python bench/bench_clients.py [--collections components,unit_grids] [--rounds 2]

Clients: Debian's GDAL 3.6 `ogr2ogr -f GPKG out.gpkg OAPIF:…/collections/X` (no options), the
newer GDAL inside pyogrio (`read_dataframe` then `write_dataframe` to GPKG, no options), and a bare
HTTP walk of the next links (the server's share), and QGIS 3.22 drawing the urban core as its
dialog adds a layer by default (`bench/qgis_draw.py`: the features in view, paged). Needs the demo city in the configured database
(`cityops demo`) at the schema head.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script (`python bench/bench_clients.py`), `bench` is not installed

from bench.servers import free_port, running  # noqa: E402
from gis.db import conninfo  # noqa: E402
from gis.settings import get_settings  # noqa: E402

OUT = ROOT / "bench" / "out"
QGIS_DRAW = ROOT / "bench" / "qgis_draw.py"
URBAN_CORE = "118.245,33.94,118.295,33.98"
NEWER_GDAL_COPY = """
import sys, pyogrio
frame = pyogrio.read_dataframe(sys.argv[1])
pyogrio.write_dataframe(frame, sys.argv[2], driver="GPKG")
print(len(frame))
"""


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def baseline_commit() -> str:
    """The commit before keyset paging came in (the parent of the one that added layers/paging.py)."""
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "-1", "--", "layers/paging.py"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return f"{added}~1"


def export_tree(commit: str, into: Path) -> Path:
    into.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def walk(url: str) -> int:
    features = 0
    with httpx.Client(timeout=120) as client:
        while url:
            page = client.get(url).json()
            features += len(page["features"])
            url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return features


def copy(client: str, base: str, collection: str, work: Path) -> tuple[float, int]:
    """(seconds, features copied) of one client copying one whole collection."""
    out = work / f"{client}-{collection}.gpkg"
    out.unlink(missing_ok=True)
    source = f"OAPIF:{base}/collections/{collection}"
    started = time.monotonic()
    if client == "gdal36":
        subprocess.run(["ogr2ogr", "-f", "GPKG", str(out), source], check=True, capture_output=True, timeout=1200)
        info = subprocess.run(["ogrinfo", "-so", str(out), collection], capture_output=True, text=True, check=True).stdout
        seconds = time.monotonic() - started
        count = int(info.split("Feature Count: ", 1)[1].split()[0])
    elif client == "qgis":
        run = subprocess.run(["/usr/bin/python3", str(QGIS_DRAW), base, collection, URBAN_CORE], check=True,
                             capture_output=True, text=True, timeout=1200)
        drawn = json.loads(run.stdout.strip().splitlines()[-1])
        seconds, count = drawn["seconds"], drawn["features"]
    elif client == "newer_gdal":
        run = subprocess.run([sys.executable, "-c", NEWER_GDAL_COPY, source, str(out)], check=True, capture_output=True,
                             text=True, timeout=1200)
        seconds = time.monotonic() - started
        count = int(run.stdout.split()[-1])
    else:
        count = walk(f"{base}/collections/{collection}/items?limit=10")
        seconds = time.monotonic() - started
    return seconds, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collections", default="components,unit_grids")
    parser.add_argument("--clients", default="gdal36,newer_gdal,qgis,http_walk")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", default=None, help="git commit of the baseline server (default: before keyset paging)")
    args = parser.parse_args()
    settings = get_settings()
    database = conninfo(settings)
    commit = args.baseline or baseline_commit()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-clients-") as tmp:
        old_tree = export_tree(commit, Path(tmp) / "baseline")
        work = Path(tmp)
        env = {"CITYOPS_DATABASE_URL": database, "CITYOPS_STATE_DIR": str(settings.state_dir),
               "CITYOPS_RATE_IP_PER_S": "0"}
        servers = {}
        for name, tree in (("before", old_tree), ("after", ROOT)):
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
                       "--port", str(port), "--app-dir", str(tree)]
            servers[name] = (command, port, {**env, "PYTHONPATH": str(tree)})
        results: dict[tuple[str, str, str], list[float]] = {}
        with running("bench_clients_before", servers["before"][0], servers["before"][2], servers["before"][1],
                     log_dir=OUT) as before, \
             running("bench_clients_after", servers["after"][0], servers["after"][2], servers["after"][1],
                     log_dir=OUT) as after:
            print(f"baseline {commit} ({subprocess.run(['git', 'rev-parse', '--short', commit], cwd=ROOT, capture_output=True, text=True).stdout.strip()}); load {loadavg()}", flush=True)
            for round_number in range(args.rounds):
                for collection in args.collections.split(","):
                    for client in args.clients.split(","):
                        order = (("before", before), ("after", after))
                        for name, base in order if round_number % 2 == 0 else reversed(order):
                            seconds, count = copy(client, base, collection, work)
                            results.setdefault((collection, client, name), []).append(seconds)
                            print(f"round {round_number + 1} {collection:>10} {client:>10} {name:>6}: {seconds:7.1f} s "
                                  f"({count:,} features) load {loadavg()}", flush=True)
        # best of the rounds (least disturbed by the other work on the machine) and the median
        print(f"\n{'collection':>10} {'client':>10} {'best before':>11} {'after':>6} {'ratio':>6} "
              f"{'median before':>13} {'after':>6} {'ratio':>6}")
        for collection in args.collections.split(","):
            for client in args.clients.split(","):
                runs = [results[(collection, client, n)] for n in ("before", "after")]
                (old, new), (old_median, new_median) = (min(r) for r in runs), (statistics.median(r) for r in runs)
                print(f"{collection:>10} {client:>10} {old:11.1f} {new:6.1f} {old / new:5.2f}x "
                      f"{old_median:13.1f} {new_median:6.1f} {old_median / new_median:5.2f}x")
        print(f"load {loadavg()}")


if __name__ == "__main__":
    main()
