"""Each format both ways: export a slice of a layer, delete it, import the file, get the same rows back."""

from __future__ import annotations

import pytest

from gis.db import open_connection
from layers.live import LiveCatalogue
from layers.export import FORMATS, export_to_file, make_request
from layers.importer import ImportOptions, import_file

get_layer = LiveCatalogue().get  # the static declarations

BBOX = "118.20,33.90,118.24,33.93"
SNAPSHOT = {
    "streetlights": "SELECT objcode AS k, objname, bgcode, objstate, geom AS g FROM city.streetlight_v "
                    "WHERE geom && ST_MakeEnvelope(118.20, 33.90, 118.24, 33.93, 4490) ORDER BY 1",
    "buildings": "SELECT permit_no AS k, use_type, floors, height_m, district_code, geom AS g FROM city.building "
                 "WHERE geom && ST_MakeEnvelope(118.20, 33.90, 118.24, 33.93, 4490) ORDER BY 1",
}
DELETE = {
    "streetlights": "DELETE FROM city.component WHERE objcode IN (SELECT objcode FROM city.streetlight_v "
                    "WHERE geom && ST_MakeEnvelope(118.20, 33.90, 118.24, 33.93, 4490))",
    "buildings": "DELETE FROM city.building WHERE geom && ST_MakeEnvelope(118.20, 33.90, 118.24, 33.93, 4490)",
}


@pytest.mark.parametrize("layer_id", ["streetlights", "buildings"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_then_import_gives_the_same_rows(city_db, tmp_path, fmt, layer_id):
    request = make_request(get_layer(layer_id), fmt, BBOX)
    with open_connection(city_db) as conn:
        conn.execute(f"CREATE TEMP TABLE before_export ON COMMIT DROP AS {SNAPSHOT[layer_id]}")
        before = conn.execute("SELECT * FROM before_export ORDER BY k").fetchall()
        path = export_to_file(conn, request, tmp_path / f"{layer_id}{request.spec.extension}")
        assert len(before) > 50
        conn.execute(DELETE[layer_id])
        report = import_file(conn, path, ImportOptions(layer=layer_id))
        assert report.rejected == 0 and report.inserted[layer_id] == len(before), report.rejects[:3]
        after = conn.execute(SNAPSHOT[layer_id]).fetchall()
        same_geometry = conn.execute(
            f"SELECT count(*) AS n FROM before_export b JOIN ({SNAPSHOT[layer_id]}) a USING (k) "
            "WHERE ST_HausdorffDistance(a.g, b.g) < 1e-8").fetchone()["n"]
        conn.rollback()
    assert [{k: v for k, v in r.items() if k != "g"} for r in after] == [{k: v for k, v in r.items() if k != "g"} for r in before]
    assert same_geometry == len(before)
