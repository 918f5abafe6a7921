"""Two million CSV rows through the public path, `cityops import`, against `ogr2ogr` of the same
file into a bare table, in the same run; the command's peak memory beside a tenth of the rows.

    .venv/bin/python bench/bench_import_large.py [--rows 2000000]

Needs the demo city in the configured database (`./run` or `cityops demo`). The rows are committed
(as ogr2ogr's are) and deleted afterwards, outside the timing. Too slow for the test suite, which
runs the same command on 200,000 rows (tests/test_import_large.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, `bench` and the project from this checkout

from gis.db import conninfo, open_connection  # noqa: E402
from gis.settings import get_settings  # noqa: E402

PEAK_OF_CHILD = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w") as out:
        out.write("lon,lat,objname\n")
        for start in range(0, rows, 100_000):
            out.write("".join(f"{118.23 + (k % 1000) * 1e-4:.6f},{33.95 + (k // 1000) * 1e-4 % 0.1:.6f},bench large\n"
                              for k in range(start, min(rows, start + 100_000))))


def cityops_import(path: Path, info: str) -> tuple[float, int, int]:
    """Seconds, peak RSS in MB and rows rejected (a few points fall in no district) of one import."""
    report = path.with_suffix(".json")
    command = [sys.executable, "-c", PEAK_OF_CHILD, sys.executable, "-m", "api.cli", "import", str(path),
               "--layer", "city_furniture", "--class", "0305", "--report", str(report)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "CITYOPS_DATABASE_URL": info})
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(result.stderr)
    return seconds, int(result.stdout.split()[-1]), json.loads(report.read_text())["rejected"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    rows = parser.parse_args().rows
    info = conninfo(get_settings())
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        small, large = Path(folder) / "tenth.csv", Path(folder) / "all.csv"
        write_csv(small, rows // 10)
        write_csv(large, rows)
        started = time.perf_counter()
        subprocess.run(["ogr2ogr", "-f", "PostgreSQL", f"PG:{info}", str(large), "-nln", "bench_large_ogr2ogr", "-overwrite",
                        "-lco", "SPATIAL_INDEX=NONE", "-oo", "X_POSSIBLE_NAMES=lon", "-oo", "Y_POSSIBLE_NAMES=lat",
                        "-a_srs", "EPSG:4490", "--config", "PG_USE_COPY", "YES"], check=True)
        ogr_s = time.perf_counter() - started
        results = {}
        for name, path in (("tenth", small), ("all", large)):
            results[name] = cityops_import(path, info)
            with open_connection(info) as conn:
                landed = conn.execute("SELECT count(*) AS n FROM city.component WHERE objname = 'bench large'").fetchone()["n"]
                conn.execute("DELETE FROM city.component WHERE objname = 'bench large'")
                conn.execute("DROP TABLE IF EXISTS bench_large_ogr2ogr")
                conn.commit()
            expected = (rows // 10 if name == "tenth" else rows) - results[name][2]
            assert landed == expected, f"{landed} rows landed, {expected} expected (read less rejected)"
    (tenth_s, tenth_mb, _), (all_s, all_mb, all_rejected) = results["tenth"], results["all"]
    print(f"rows {rows:,}  (load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()) + ")")
    print(f"  ogr2ogr bare table   {ogr_s:7.1f} s  {rows / ogr_s:9,.0f} rows/s")
    print(f"  cityops import       {all_s:7.1f} s  {rows / all_s:9,.0f} rows/s  ratio to ogr2ogr {all_s / ogr_s:5.1f}  peak RSS {all_mb} MB  ({all_rejected:,} rows rejected)")
    print(f"  cityops import 1/10  {tenth_s:7.1f} s  {rows / 10 / tenth_s:9,.0f} rows/s  peak RSS {tenth_mb} MB")


if __name__ == "__main__":
    main()
