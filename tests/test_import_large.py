"""Two million rows: the reader streams in batches, so the client's memory stays flat."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

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
