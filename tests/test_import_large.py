"""Large files: the reader streams in batches, so memory stays flat, and the public command takes them whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gis.db import open_connection

STAGE_ONLY = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    from gis.source_crs import parse_crs
    from gis.db import open_connection
    from layers.importer.source import open_source
    from layers.importer.stage import copy_layer, create_stage
    path, info = Path(sys.argv[1]), sys.argv[2]
    source = open_source(path, [], None)
    with open_connection(info) as conn:
        create_stage(conn)
        copy_layer(conn, source, source.layers[0], parse_crs("EPSG:4490"), None, lambda n: None)
        staged = conn.execute("SELECT count(*) AS n FROM import_stage").fetchone()["n"]
        conn.rollback()
    print(staged, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def _csv(path, blocks: int) -> None:
    with open(path, "w") as out:
        out.write("lon,lat,objname\n")
        for block in range(blocks):
            out.write("".join(f"{118.2 + (k % 1000) * 1e-4:.6f},{33.9 + (block * 100 + k // 1000) * 1e-4:.6f},bin {k}\n"
                              for k in range(100_000)))


def _stage(path, info) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", STAGE_ONLY, str(path), info], capture_output=True, text=True, check=True)
    staged, peak_mb = map(int, result.stdout.split())
    return staged, peak_mb


@pytest.mark.slow
def test_two_million_csv_rows_stage_in_bounded_memory(databases, tmp_path):
    info = databases.create("import_large")
    small, large = tmp_path / "two_hundred_thousand.csv", tmp_path / "two_million.csv"
    _csv(small, 2)
    _csv(large, 20)
    staged_small, peak_small = _stage(small, info)
    staged_large, peak_large = _stage(large, info)
    assert (staged_small, staged_large) == (200_000, 2_000_000)
    # ten times the rows, about the same peak: memory is set by the batch size, not the file
    assert peak_large - peak_small < 100, f"peak RSS {peak_small} MB for 200k rows, {peak_large} MB for 2M rows"


@pytest.mark.slow
def test_a_large_csv_through_cityops_import(city_db, tmp_path):
    """The public path, at a size that fits the suite's time (200,000 rows; the 2-million-row run
    through the same command is bench/bench_import_large.py): every row lands, in one commit, and
    the command's peak memory stays near what it is for a tenth of the rows."""
    small, large = tmp_path / "twenty_thousand.csv", tmp_path / "two_hundred_thousand.csv"
    with open(large, "w") as out:
        out.write("lon,lat,objname\n")
        out.write("".join(f"{118.23 + (k % 1000) * 1e-4:.6f},{33.95 + (k // 1000) * 1e-4:.6f},large bin\n" for k in range(200_000)))
    small.write_text("".join(large.read_text().splitlines(keepends=True)[:20_001]))
    try:
        peaks = []
        for path, rows in ((small, 20_000), (large, 200_000)):
            report = tmp_path / "report.json"
            peaks.append(_cityops_import(path, city_db, report))
            rejected = json.loads(report.read_text())["rejected"]
            with open_connection(city_db) as conn:
                landed = conn.execute(
                    "SELECT count(*) AS n, count(DISTINCT objcode) AS codes, count(bgcode) AS gridded, count(*) FILTER "
                    "(WHERE EXISTS (SELECT 1 FROM city.unit_grid g WHERE ST_Intersects(g.geom, c.geom) AND g.district_code = c.district_code)) AS in_grid "
                    "FROM city.component c WHERE objname = 'large bin'").fetchone()
                # every row landed but those the report lists as rejected (a few fall in no district: the canal's edge)
                assert landed["n"] == landed["codes"] == rows - rejected and rejected < rows // 50, (landed, rejected)
                assert landed["gridded"] == landed["in_grid"] > rows // 2, landed
                conn.execute("DELETE FROM city.component WHERE objname = 'large bin'")
                conn.commit()
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.component WHERE objname = 'large bin'")
            conn.commit()
    assert peaks[1] - peaks[0] < 150, f"peak RSS {peaks[0]} MB for 20k rows, {peaks[1]} MB for 200k rows"


PEAK_OF_CHILD = textwrap.dedent("""
    import resource, subprocess, sys
    subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
""")


def _cityops_import(path, info, report) -> int:
    """Runs `cityops import` and returns its peak RSS in MB (measured by a parent of its own)."""
    command = [sys.executable, "-c", PEAK_OF_CHILD, sys.executable, "-m", "api.cli", "import", str(path),
               "--layer", "city_furniture", "--class", "0305", "--report", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env={**os.environ, "CITYOPS_DATABASE_URL": info})
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])
