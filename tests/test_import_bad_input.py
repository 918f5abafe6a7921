"""Bad input: each gets a clear message or a per-row report, and a failed import leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from gis.db import open_connection
from gis.errors import InvalidInput
from layers.live import LiveCatalogue
from layers.export import export_to_file, make_request
from layers.importer import ImportOptions, import_file
from tests.support.import_files import BROKEN_CSV

get_layer = LiveCatalogue().get  # the static declarations

BBOX = "118.20,33.90,118.22,33.92"


def _counts(conn) -> tuple[int, int]:
    return tuple(conn.execute(f"SELECT count(*) AS n FROM city.{t}").fetchone()["n"] for t in ("component", "building"))


def _counts_seen_from_outside(city_db) -> tuple[int, int]:
    with open_connection(city_db) as outside:
        return _counts(outside)


@pytest.fixture
def conn(city_db):
    """The import's connection; the test's work stays in its open transaction, which is rolled back.
    Another connection, while that transaction is still open, must see nothing of it: the importer
    commits nothing behind its caller's back."""
    before = _counts_seen_from_outside(city_db)
    with open_connection(city_db) as connection:
        yield connection
        assert _counts_seen_from_outside(city_db) == before
        connection.rollback()


def _feature(geometry: dict, **properties) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def _geojson(path, features) -> None:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")


@pytest.mark.parametrize("fmt", ["gpkg", "geojson", "fgb"])
def test_truncated_file_is_refused_whole(conn, tmp_path, fmt):
    path = export_to_file(conn, make_request(get_layer("buildings"), fmt, BBOX), tmp_path / f"b.{fmt}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="b." + fmt):
        import_file(conn, path, ImportOptions(layer="buildings"))


def test_shapefile_without_prj_asks_for_crs(conn, tmp_path):
    full = export_to_file(conn, make_request(get_layer("streetlights"), "shp", BBOX), tmp_path / "full.zip")
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(full) as source, zipfile.ZipFile(bare, "w") as target:
        for name in source.namelist():
            if not name.endswith(".prj"):
                target.writestr(name, source.read(name))
    with pytest.raises(InvalidInput, match="--crs"):
        import_file(conn, bare, ImportOptions(layer="streetlights"))
    conn.execute("DELETE FROM city.component WHERE class_code = '0118' AND geom && ST_MakeEnvelope(118.20, 33.90, 118.22, 33.92, 4490)")
    report = import_file(conn, bare, ImportOptions(layer="streetlights", crs="EPSG:4490"))
    assert report.rejected == 0 and report.inserted["streetlights"] > 0


def test_mixed_geometry_types_reject_the_wrong_rows(conn, tmp_path):
    path = tmp_path / "mixed.geojson"
    _geojson(path, [_feature({"type": "Point", "coordinates": [118.21, 33.91 + k * 1e-4]}) for k in range(3)]
             + [_feature({"type": "LineString", "coordinates": [[118.21, 33.91], [118.22, 33.92]]}) for _ in range(2)])
    report = import_file(conn, path, ImportOptions(layer="streetlights"))
    assert report.inserted == {"streetlights": 3}
    assert [(r["row"], r["reason"]) for r in report.rejects] == [
        (4, "wrong geometry type LINESTRING; layer streetlights takes POINT"),
        (5, "wrong geometry type LINESTRING; layer streetlights takes POINT")]


def test_a_row_across_half_the_globe_is_rejected_not_the_whole_import(conn, tmp_path):
    # with --district the whole-world polygon reached the geodesic area column, and the import
    # failed as an "internal error" (PostGIS: Antipodal edge detected)
    path = tmp_path / "world.geojson"
    world = {"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]}
    house = {"type": "Polygon", "coordinates": [[[118.21, 33.91], [118.2101, 33.91], [118.2101, 33.9101], [118.21, 33.9101],
                                                 [118.21, 33.91]]]}
    _geojson(path, [_feature(world), _feature(house)])
    report = import_file(conn, path, ImportOptions(layer="buildings", district="321302"))
    assert report.inserted == {"buildings": 1}
    assert [(r["row"], r["reason"][:29]) for r in report.rejects] == [(1, "an edge spans 180° of longitu")]


def test_ten_thousand_invalid_polygons_are_repaired_and_counted(conn, tmp_path):
    path = tmp_path / "bowties.geojsonl"
    with open(path, "w") as out:
        for k in range(10_000):
            x, y = 118.20 + (k % 100) * 2e-4, 33.90 + (k // 100) * 2e-4
            bowtie = [[x, y], [x + 1e-4, y + 1e-4], [x + 1e-4, y], [x, y + 1e-4], [x, y]]  # self-intersecting
            out.write(json.dumps(_feature({"type": "Polygon", "coordinates": [bowtie]}, floors=2)) + "\n")
    report = import_file(conn, path, ImportOptions(layer="buildings"))
    assert report.repaired == 10_000 and report.rejected == 0 and report.inserted == {"buildings": 10_000}
    assert conn.execute("SELECT count(*) AS n FROM city.building WHERE floors = 2 AND ST_NumGeometries(geom) = 2 "
                        "AND geom && ST_MakeEnvelope(118.2, 33.9, 118.22, 33.92, 4490)").fetchone()["n"] >= 10_000


def test_broken_csv_rows_are_reported_by_row_number(conn, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(BROKEN_CSV, encoding="utf-8")
    report = import_file(conn, path, ImportOptions(layer="city_furniture"))
    reasons = {r["row"]: r["reason"] for r in report.rejects}
    assert report.inserted == {"city_furniture": 1} and report.read == 7
    assert "no geometry" in reasons[2] and "no geometry" in reasons[5]
    assert "unknown component class '0999'" in reasons[3]
    assert "breaks GB/T 30428.2" in reasons[4]
    assert "county 999999 is not a district" in reasons[6]
    assert "objcode 'fields' breaks GB/T 30428.2" in reasons[7]  # extra fields shift into objcode


def test_too_many_rejects_import_nothing(conn, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(BROKEN_CSV, encoding="utf-8")
    with pytest.raises(InvalidInput, match="6 rows rejected .*Nothing was imported"):
        import_file(conn, path, ImportOptions(layer="city_furniture", max_rejects=2))


def test_not_a_gis_file(conn, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(InvalidInput, match="cannot read notes.txt"):
        import_file(conn, path, ImportOptions(layer="buildings"))


def test_gcj02_data_declared_wgs84_is_flagged_with_the_offset(conn, tmp_path):
    from gis.source_crs import wgs84_to_gcj02
    rows = conn.execute("SELECT objcode, ST_X(geom) AS x, ST_Y(geom) AS y FROM city.streetlight_v ORDER BY objcode LIMIT 200").fetchall()
    path = tmp_path / "amap.csv"
    # objname carries the original's code, so each imported light can be matched to the one it was shifted from
    lines = ["lon,lat,objname"] + [",".join(f"{v:.8f}" for v in wgs84_to_gcj02(r["x"], r["y"])) + f",gcj {r['objcode']}" for r in rows]
    path.write_text("\n".join(lines), encoding="utf-8")
    report = import_file(conn, path, ImportOptions(layer="streetlights"))
    assert any("GCJ-02" in w and "--crs gcj02" in w for w in report.warnings), report.warnings
    conn.rollback()
    fixed = import_file(conn, path, ImportOptions(layer="streetlights", crs="gcj02"))
    assert fixed.warnings == [] and fixed.inserted == {"streetlights": 200}
    # read back what landed in the layer (not the importer's staging table): each light back on its original
    moved = conn.execute("SELECT count(*) AS n, max(ST_Distance(a.geom::geography, b.geom::geography)) AS m "
                         "FROM city.streetlight_v a JOIN city.streetlight_v b ON a.objname = 'gcj ' || b.objcode").fetchone()
    assert moved["n"] == 200 and moved["m"] < 0.5


def _layer_rows(city_db, layer_id: str) -> list[tuple]:
    """A layer's rows as another connection sees them, after the command has ended."""
    layer = get_layer(layer_id)
    with open_connection(city_db) as outside:
        return [tuple(r.values()) for r in outside.execute(
            f"SELECT objcode, objname, ST_AsBinary(geom) AS geom FROM {layer.relation} WHERE {layer.where or 'true'} ORDER BY objcode").fetchall()]


def _cityops_import(city_db, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", "import", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CITYOPS_DATABASE_URL": city_db})


@pytest.mark.parametrize("case", ["truncated", "replace_then_too_many_rejects", "append_then_too_many_rejects"])
def test_a_failed_import_command_leaves_the_layer_as_it_was(city_db, tmp_path, case):
    """Through the public path (`cityops import`): the layer read from another connection after the
    command is row for row what it was, even when the import had already emptied it (replace)."""
    before = _layer_rows(city_db, "city_furniture")
    assert before
    if case == "truncated":
        with open_connection(city_db) as conn:
            path = export_to_file(conn, make_request(get_layer("city_furniture"), "gpkg", BBOX), tmp_path / "furniture.gpkg")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        args = [path, "--layer", "city_furniture", "--mode", "replace"]
    else:
        path = tmp_path / "broken.csv"
        path.write_text(BROKEN_CSV, encoding="utf-8")
        args = [path, "--layer", "city_furniture", "--max-rejects", "2", "--mode", case.split("_")[0]]
    result = _cityops_import(city_db, *args)
    assert result.returncode != 0 and "error:" in result.stderr, result.stdout + result.stderr
    assert _layer_rows(city_db, "city_furniture") == before
