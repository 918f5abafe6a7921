"""Real OGC API Features clients against the running server: Debian's GDAL 3.6 (ogrinfo/ogr2ogr),
the GDAL 3.12 inside pyogrio, OWSLib, and a static check of the OpenAPI document (ogcapi-registry)."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pyogrio
import pytest
from ogcapi_registry import validate_ogc_api
from owslib.ogcapi.features import Features

from gis.db import open_connection
from tests.conftest import bearer

pytestmark = pytest.mark.slow


def ids(db, query: str) -> list:
    with open_connection(db) as conn:
        return [row["id"] for row in conn.execute(query)]


@pytest.mark.skipif(shutil.which("ogr2ogr") is None, reason="Debian gdal-bin is not installed")
def test_debian_gdal_reads_a_collection_page_by_page(live_server, city_db, tmp_path):
    listing = subprocess.run(["ogrinfo", "-ro", "-q", f"OAPIF:{live_server}"], capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "stall_sites" in listing.stdout and "unit_grids" in listing.stdout
    out = tmp_path / "stalls.geojson"
    copied = subprocess.run(
        ["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{live_server}/collections/stall_sites", "stall_sites",
         "-oo", "PAGE_SIZE=200", "-where", "district_code = '321302'", "-spat", "118.2", "33.9", "118.3", "34.0"],
        capture_output=True, text=True, timeout=300)
    assert copied.returncode == 0, copied.stderr
    got = sorted(f["properties"]["code"] for f in json.loads(out.read_text())["features"])
    with open_connection(city_db) as conn:
        expected = [r["code"] for r in conn.execute(
            "SELECT code FROM city.stall_site WHERE district_code = '321302' "
            "AND ST_Intersects(geom, ST_MakeEnvelope(118.2, 33.9, 118.3, 34.0, 4490)) ORDER BY code")]
    assert got == expected and got


def test_pyogrio_gdal_312_reads_with_crs_and_filters(live_server, city_db):
    url = f"OAPIF:{live_server}/collections/stall_sites"
    assert "stall_sites" in pyogrio.list_layers(f"OAPIF:{live_server}")[:, 0]
    frame = pyogrio.read_dataframe(url, where="capacity > 30")
    assert frame.crs.to_epsg() == 4490  # GDAL ≥ 3.8 asks for the storage CRS
    assert sorted(frame["code"]) == sorted(ids(city_db, "SELECT code AS id FROM city.stall_site WHERE capacity > 30"))
    metric = pyogrio.read_dataframe(url, CRS="EPSG:4548")
    assert metric.crs.to_epsg() == 4548
    first = metric.sort_values("code").geometry.iloc[0]
    with open_connection(city_db) as conn:
        x, y = conn.execute("SELECT ST_X(g) AS x, ST_Y(g) AS y FROM (SELECT ST_Transform(geom, 4548) AS g FROM city.stall_site "
                            "ORDER BY code LIMIT 1) s").fetchone().values()
    assert (first.x, first.y) == pytest.approx((x, y), abs=0.01)  # GDAL swapped the northing-first axes back


def test_owslib_reads_filters_and_writes(live_server, city_db, keys):
    client = Features(live_server)
    assert len(client.collections()["collections"]) >= 17
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter" in client.conformance()["conformsTo"]
    page = client.collection_items("stall_sites", filter="capacity > 30 AND district_code = '321302'", limit=1000)
    assert sorted(f["id"] for f in page["features"]) == ids(
        city_db, "SELECT id FROM city.stall_site WHERE capacity > 30 AND district_code = '321302' ORDER BY id")
    assert "capacity" in client.collection_queryables("stall_sites")["properties"]
    by_bbox = client.collection_items("stall_sites", bbox=[118.2, 33.9, 118.3, 34.0], limit=1000, sortby=("capacity", "desc"))
    capacities = [f["properties"]["capacity"] for f in by_bbox["features"]]
    assert capacities == sorted(capacities, reverse=True) and capacities

    # OWSLib 0.35 merges the headers given to one client into its module-wide REQUEST_HEADERS, so every
    # later client in the process would send this key: give the editor a dict of its own instead.
    editor = Features(live_server)
    editor.headers = {**editor.headers, **bearer(keys["editor"]), "Content-Type": "application/geo+json"}
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [118.3, 33.95]},
               "properties": {"code": "T6-OWS", "name": "OWSLib", "capacity": 3, "district_code": "321302"}}
    assert editor.collection_item_create("stall_sites", json.dumps(feature))
    [made] = client.collection_items("stall_sites", code="T6-OWS")["features"]
    editor.headers["If-Match"] = httpx.get(f"{live_server}/collections/stall_sites/items/{made['id']}").headers["ETag"]
    assert editor.collection_item_delete("stall_sites", str(made["id"]))
    assert client.collection_items("stall_sites", code="T6-OWS")["numberMatched"] == 0


def test_openapi_document_passes_the_ogc_static_checks(live_server):
    document = httpx.get(f"{live_server}/api").json()
    conformance = httpx.get(f"{live_server}/conformance").json()["conformsTo"]
    result = validate_ogc_api(document, conformance)
    assert result.is_valid, result.errors
    assert not [w for w in result.warnings if w.get("severity") in ("critical", "warning")], result.warnings
