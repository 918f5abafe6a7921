"""Import speed: `cityops import` against `ogr2ogr -f PostgreSQL` of the same file, in the same run.

    .venv/bin/python bench/bench_import.py [--rows 200000]

Needs the demo city in the configured database (`./run` or `cityops demo`). ogr2ogr (Debian gdal-bin)
copies the file into a plain new table with COPY; cityops stages, checks every row in SQL, allocates
GB/T 30428.2 objcodes and bgcodes and writes city.component — then this script rolls it back.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely

from gis.db import connect, conninfo
from gis.settings import get_settings
from layers.importer import ImportOptions, import_file


def make_points(path: Path, rows: int) -> None:
    rng = np.random.default_rng(30428)
    points = shapely.points(rng.uniform(118.20, 118.35, rows), rng.uniform(33.90, 34.02, rows))
    pyogrio.raw.write(str(path), shapely.to_wkb(points), field_data=[np.full(rows, "bench bin", dtype=object)],
                      fields=["objname"], geometry_type="Point", crs="EPSG:4490", driver="GPKG", layer="bins")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    rows = parser.parse_args().rows
    settings = get_settings()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bins.gpkg"
        make_points(path, rows)

        started = time.perf_counter()
        subprocess.run(["ogr2ogr", "-f", "PostgreSQL", f"PG:{conninfo(settings)}", str(path), "-nln", "bench_ogr2ogr",
                        "-overwrite", "-lco", "SPATIAL_INDEX=NONE", "--config", "PG_USE_COPY", "YES"], check=True)
        ogr_s = time.perf_counter() - started
        with connect(settings) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_ogr2ogr")
            conn.commit()

            started = time.perf_counter()
            report = import_file(conn, path, ImportOptions(layer="city_furniture", class_code="0305", district="321302"))
            ours_s = time.perf_counter() - started
            conn.rollback()
    assert report.inserted == {"city_furniture": rows}, f"{report.rejected} rejected, first: {report.rejects[:1]}"
    print(f"rows {rows:,}: ogr2ogr {ogr_s:.1f} s ({rows / ogr_s:,.0f} rows/s), "
          f"cityops import {ours_s:.1f} s ({rows / ours_s:,.0f} rows/s), ratio cityops/ogr2ogr {ours_s / ogr_s:.2f}")


if __name__ == "__main__":
    main()
