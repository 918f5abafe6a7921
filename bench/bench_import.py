"""Import speed: `cityops import` against `ogr2ogr -f PostgreSQL` of the same file, in the same run.

    .venv/bin/python bench/bench_import.py [--rows 200000]

Needs the demo city in the configured database (`./run` or `cityops demo`). ogr2ogr (Debian gdal-bin)
runs three ways, so the reader sees where the gap comes from:

- `bare`: a new table, no index (`-lco SPATIAL_INDEX=NONE`): COPY and nothing else;
- `gist`: a new table with ogr2ogr's default spatial index (`SPATIAL_INDEX=GIST`, built after the load);
- `like`: `-append` into a copy of city.component with its indexes, checks, generated Web Mercator copy
  and foreign keys to district and class (`LIKE … INCLUDING ALL`, no change triggers), objcodes from
  a sequence default — the work of writing our table, without any of the checks.

cityops stages, checks every row in SQL, allocates GB/T 30428.2 objcodes and bgcodes, writes
city.component and commits, as ogr2ogr does (the commit is inside the timed span on both sides);
the rows are deleted afterwards, outside the timing.
"""

from __future__ import annotations

import argparse
import os
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

        ogr = {}
        with connect(settings) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_ogr2ogr")
            conn.execute("DROP TABLE IF EXISTS bench_like")
            conn.execute("DROP SEQUENCE IF EXISTS bench_like_serial")
            conn.execute("CREATE SEQUENCE bench_like_serial")
            conn.execute("CREATE TABLE bench_like (LIKE city.component INCLUDING ALL)")
            conn.execute("ALTER TABLE bench_like ALTER objcode SET DEFAULT "
                         "('3213020305' || lpad(nextval('bench_like_serial')::text, 6, '0'))::char(16), "
                         "ADD FOREIGN KEY (district_code) REFERENCES city.district, "
                         "ADD FOREIGN KEY (class_code) REFERENCES city.component_class, "
                         "ADD FOREIGN KEY (bgcode) REFERENCES city.unit_grid")
            conn.commit()
        target = f"PG:{conninfo(settings)}"
        for name, args in (("bare", ["-nln", "bench_ogr2ogr", "-overwrite", "-lco", "SPATIAL_INDEX=NONE"]),
                           ("gist", ["-nln", "bench_ogr2ogr", "-overwrite", "-lco", "SPATIAL_INDEX=GIST"]),
                           ("like", ["-nln", "bench_like", "-append"])):
            started = time.perf_counter()
            subprocess.run(["ogr2ogr", "-f", "PostgreSQL", target, str(path), *args, "--config", "PG_USE_COPY", "YES"],
                           check=True, env={**os.environ, "PGOPTIONS": ""})
            ogr[name] = time.perf_counter() - started
        with connect(settings) as conn:
            like_rows = conn.execute("SELECT count(*) AS n FROM bench_like").fetchone()["n"]
            conn.execute("DROP TABLE bench_ogr2ogr")
            conn.execute("DROP TABLE bench_like")
            conn.execute("DROP SEQUENCE bench_like_serial")
            conn.commit()

            started = time.perf_counter()
            report = import_file(conn, path, ImportOptions(layer="city_furniture", class_code="0305", district="321302"))
            conn.commit()
            ours_s = time.perf_counter() - started
            conn.execute("DELETE FROM city.component WHERE objname = 'bench bin'")
            conn.commit()
    assert report.inserted == {"city_furniture": rows}, f"{report.rejected} rejected, first: {report.rejects[:1]}"
    assert like_rows == rows, f"ogr2ogr -append wrote {like_rows} rows"
    print(f"rows {rows:,}  (uptime: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f})")
    for name, seconds in ogr.items():
        print(f"  ogr2ogr {name:4}  {seconds:6.1f} s  {rows / seconds:9,.0f} rows/s   cityops/this {ours_s / seconds:5.2f}")
    print(f"  cityops       {ours_s:6.1f} s  {rows / ours_s:9,.0f} rows/s")

if __name__ == "__main__":
    main()
