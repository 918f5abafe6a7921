"""Import caps (issue 13): rows, decompressed bytes and vertices per feature, each refused with the
setting that raises it, before the work it bounds; nothing is imported."""

from __future__ import annotations

import json
import math
import zipfile

import pytest

from gis.db import open_connection
from gis.errors import InvalidInput
from gis.settings import settings_of
from layers.importer import ImportOptions, import_file


@pytest.fixture
def conn(city_db):
    with open_connection(city_db) as connection:
        before = connection.execute("SELECT count(*) AS n FROM city.building").fetchone()["n"]
        yield connection
        connection.rollback()
        assert connection.execute("SELECT count(*) AS n FROM city.building").fetchone()["n"] == before


@pytest.fixture
def limits(monkeypatch):
    def set_limits(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"CITYOPS_{name.upper()}", str(value))
        settings_of.cache_clear()
    yield set_limits
    monkeypatch.undo()
    settings_of.cache_clear()


def _square(i: int) -> dict:
    x, y = 118.2 + i * 1e-3, 33.9
    return {"type": "Feature", "properties": {"name": f"b{i}"}, "geometry": {"type": "Polygon", "coordinates": [
        [[x, y], [x + 1e-4, y], [x + 1e-4, y + 1e-4], [x, y + 1e-4], [x, y]]]}}


def test_a_zip_that_expands_past_the_limit_is_refused_unread(conn, tmp_path, limits):
    limits(import_max_uncompressed_mb=1)
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("rows.csv", "lon,lat\n" + "118.2,33.9\n" * 400_000)  # 4.4 MB, compresses to a few KB
    assert path.stat().st_size < 100_000
    with pytest.raises(InvalidInput, match="CITYOPS_IMPORT_MAX_UNCOMPRESSED_MB"):
        import_file(conn, path, ImportOptions(layer="buildings"))


def test_more_rows_than_the_limit_are_refused(conn, tmp_path, limits):
    limits(import_max_rows=5)
    path = tmp_path / "many.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [_square(i) for i in range(8)]}))
    with pytest.raises(InvalidInput, match="8 features.*CITYOPS_IMPORT_MAX_ROWS"):
        import_file(conn, path, ImportOptions(layer="buildings"))
    # a filtered read cannot count ahead: the rows are counted as they stream
    with pytest.raises(InvalidInput, match="more than 5 features.*CITYOPS_IMPORT_MAX_ROWS"):
        import_file(conn, path, ImportOptions(layer="buildings", where="name IS NOT NULL"))


def test_a_feature_with_too_many_vertices_is_rejected_with_its_reason(conn, tmp_path, limits):
    limits(feature_max_vertices=1000)
    ring = [[118.2 + 1e-3 * math.cos(a / 400), 33.9 + 1e-3 * math.sin(a / 400)]
            for a in range(2500)]
    ring.append(ring[0])
    big = {"type": "Feature", "properties": {"name": "big"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    path = tmp_path / "big.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [big, _square(1)]}))
    report = import_file(conn, path, ImportOptions(layer="buildings", dry_run=True))
    assert report.rejected == 1
    assert "CITYOPS_FEATURE_MAX_VERTICES" in json.dumps(report.__dict__, default=str)
