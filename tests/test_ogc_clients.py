"""Other departments' tools with no setup, against the live server: Debian's GDAL 3.6 (ogr2ogr with
no options), the newer GDAL inside pyogrio (vector tiles with typed attributes), QGIS 3.22 (PyQGIS,
offscreen: every collection, the vector-tile layer from the style URL, the served project, a render
of the urban core), OpenLayers with ol-mapbox-style in Chromium, and the HTML pages people read.
Screenshots and figures go to test-artifacts/."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pyogrio
import pytest

from layers.catalogue import COUNT_CLASSES

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
QGIS_PYTHON = Path("/usr/bin/python3")
QGIS_SCRIPT = ROOT / "tests" / "clients" / "qgis_render.py"
OPENLAYERS_SCRIPT = ROOT / "tests" / "browser" / "openlayers.mjs"
OPENLAYERS = ROOT / "web_map" / "node_modules" / "ol-mapbox-style"
LARGEST = "components"


def _has_pyqgis() -> bool:
    return QGIS_PYTHON.exists() and subprocess.run([str(QGIS_PYTHON), "-c", "import qgis.core"],
                                                   capture_output=True, timeout=60).returncode == 0


# -- documents (in-process) --------------------------------------------------------------------

def test_collections_describe_their_fields_up_front(client):
    links = client.get("/collections/stall_sites").json()["links"]
    described = {link["type"]: link["href"] for link in links if link["rel"] == "describedBy"}
    assert set(described) == {"text/xml", "application/schema+json"}
    xsd = client.get(described["text/xml"].replace("http://testserver", ""))
    assert xsd.status_code == 200 and xsd.headers["content-type"].startswith("text/xml")
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    elements = {e.get("name"): e.get("type") for e in ElementTree.fromstring(xsd.content).iterfind(".//xs:sequence/xs:element", ns)}
    assert elements == {"geometry": "gml:PointPropertyType", "code": "xs:string", "name": "xs:string", "capacity": "xs:long",
                        "occupied": "xs:long", "district_code": "xs:string", "bgcode": "xs:string"}
    schema = client.get("/collections/alarms/schema").json()
    assert schema["properties"]["properties"]["properties"]["raised_at"] == {"title": "raised_at", "type": "string",
                                                                            "format": "date-time"}
    assert client.get("/collections/nosuch/schema").status_code == 404


def test_tilejson_only_where_its_tiles_are_web_mercator(client):
    assert client.get("/tiles/WebMercatorQuad/tilejson.json").status_code == 200
    for tms in ("WorldCRS84Quad", "CGCS2000Quad"):
        answer = client.get(f"/collections/stall_sites/tiles/{tms}/tilejson.json")
        assert answer.status_code == 404 and "WebMercatorQuad" in answer.json()["description"]
        links = client.get(f"/collections/stall_sites/tiles/{tms}").json()["links"]
        assert not [link for link in links if link["href"].endswith("tilejson.json")]


def test_html_pages_for_people(client):
    for url in ("/?f=html", "/conformance?f=html", "/collections?f=html", "/collections/stall_sites?f=html"):
        page = client.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), url
    assert "ogcapi-features-1/1.0/conf/core" in client.get("/conformance", headers={"Accept": "text/html"}).text
    assert client.get("/", headers={"Accept": "application/json"}).json()["title"]
    items = client.get("/collections/stall_sites/items?f=html&limit=5&filter=capacity > 30").text
    for control in ('name="filter"', 'name="bbox"', 'name="limit"', 'id="feature-map"'):
        assert control in items
    item = client.get("/collections/stall_sites/items/1?f=html").text
    assert "coordinates" not in item and "<td>Point</td>" in item
    for page in (items, item):  # same-origin scripts and styles only: nothing inline
        assert "<style" not in page and not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
        for asset in re.findall(r'(?:src|href)="http://testserver(/(?:static|map/vendor)/[^"]+)"', page):
            assert client.get(asset).status_code == 200, asset


# -- real clients against the live server --------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ogr2ogr") is None, reason="Debian gdal-bin is not installed")
def test_debian_gdal_36_copies_the_largest_collection_with_no_options(live_server, tmp_path):
    matched = httpx.get(f"{live_server}/collections/{LARGEST}/items?limit=1").json()["numberMatched"]
    out = tmp_path / "largest.gpkg"
    started = time.monotonic()
    copied = subprocess.run(["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{live_server}/collections/{LARGEST}"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "CPL_DEBUG": "ON"})
    seconds = time.monotonic() - started
    assert copied.returncode == 0, copied.stderr[-2000:]
    pages = [line for line in copied.stderr.splitlines() if "HTTP: Fetch(" in line and "/items" in line]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "gdal36_largest_collection.json").write_text(json.dumps(
        {"collection": LARGEST, "features": matched, "requests": len(pages), "seconds": round(seconds, 1)}))
    # GDAL 3.6 always starts at limit=10 (it reads no page size from the server); the next links
    # then ask for full pages, so the copy takes ~n/1,000 requests instead of n/10
    assert len(pages) <= math.ceil(matched / 1000) + 3, pages[:5]
    # every page after the first continues from a cursor (an index range scan, no count), none skips an offset
    # (GDAL reads the first page twice: once for the fields, once to start copying)
    first_pages = [page for page in pages if "cursor=" not in page]
    assert len(first_pages) <= 2 and not [page for page in pages if "offset=" in page], pages[:4]
    info = subprocess.run(["ogrinfo", "-so", str(out), LARGEST], capture_output=True, text=True, timeout=60).stdout
    assert f"Feature Count: {matched}" in info
    assert "objcode: String" in info


@pytest.mark.slow
def test_newer_gdal_reads_collection_tiles_with_typed_attributes(live_server):
    # GDAL's OGCAPI driver samples a few tiles for the fields unless the collection links its schema;
    # stall sites are sparse, so every sampled tile is empty and the layer used to have no fields
    source = f"OGCAPI:{live_server}/collections/stall_sites"
    for zoom in (13, 16):
        info = pyogrio.read_info(source, layer=f"Zoom level {zoom}")
        fields = dict(zip(info["fields"], info["dtypes"]))
        assert fields["capacity"] == "int64" and fields["code"] == "object", fields
    frame = pyogrio.read_dataframe(f"OGCAPI:{live_server}/collections/manhole_covers", layer="Zoom level 16",
                                   bbox=(118.275, 33.955, 118.285, 33.965))
    assert len(frame) > 0 and str(frame["battery_pct"].dtype).startswith("int") and frame["sensor_state"].notna().all()


@pytest.mark.slow
@pytest.mark.skipif(not _has_pyqgis(), reason="Debian python3-qgis is not installed")
def test_qgis_loads_every_collection_the_tiles_and_the_project(live_server):
    ARTIFACTS.mkdir(exist_ok=True)
    run = subprocess.run([str(QGIS_PYTHON), str(QGIS_SCRIPT), live_server, str(ARTIFACTS)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    (ARTIFACTS / "qgis_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1))
    collections = [c for c in httpx.get(f"{live_server}/collections").json()["collections"] if c.get("dataType") != "map"]
    assert set(report["collections"]) == {c["id"] for c in collections}
    for collection in ("stall_sites", "unit_grids", LARGEST):
        matched = httpx.get(f"{live_server}/collections/{collection}/items?limit=1").json()["numberMatched"]
        assert report["collections"][collection]["count"] == matched, collection
    # QGIS 3.22 takes the fields from the first page: an empty collection shows none
    assert all(c["valid"] and (c["fields"] > 0 or c["count"] == 0) for c in report["collections"].values())
    assert report["stall_sites_read"] == 950
    # QGIS follows the cursor links through the urban core's components: each one once, none missing
    core = httpx.get(f"{live_server}/collections/{LARGEST}/items", params={"bbox": "118.245,33.94,118.295,33.98", "limit": 1})
    assert report["components_core"] == {"features": core.json()["numberMatched"], "distinct": core.json()["numberMatched"]}
    assert core.json()["numberMatched"] > 1000

    tiles = report["tiles"]
    assert tiles["valid"] and tiles["style_loaded"] and not tiles["style_error"]
    # the count circles keep their classes and sizes (a style QGIS cannot read falls back to 10 mm bubbles)
    covers = [s for s in tiles["count_styles"] if s["name"].startswith("manhole_covers-counts-")]
    assert [s["name"] for s in covers] == [f"manhole_covers-counts-{low}" for low, _, _ in COUNT_CLASSES]
    sizes = [s["size"] for s in covers]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes) and max(sizes) < 5 and all(s["unit"] == 0 for s in covers)
    # drawn: lines, fills and circles, not a map blanketed by bubbles nor an empty one
    for render in (report["render_tiles"], report["render_project"]):
        assert not render["errors"] and 0.05 < render["coloured_share"] < 0.6, render

    assert report["project_read"] and all(report["project_layers"].values())
    # plus an XYZ layer per orthophoto catalogued when the project was written (detection jobs of earlier
    # tests may still be adding change maps)
    orthophotos = httpx.get(f"{live_server}/orthophotos").json()["features"]
    assert len(collections) + 1 <= len(report["project_layers"]) <= len(collections) + 1 + len(orthophotos)
    assert report["project_tile_styles"] == tiles["styles"]


@pytest.mark.skipif(not OPENLAYERS.exists() or not Path("/usr/bin/chromium").exists(),
                    reason="web_map npm packages (ol, ol-mapbox-style) or Debian chromium are not installed")
@pytest.mark.slow
def test_openlayers_and_the_html_map_render_in_chromium(live_server):
    ARTIFACTS.mkdir(exist_ok=True)
    run = subprocess.run(["node", str(OPENLAYERS_SCRIPT), live_server, str(ARTIFACTS / "openlayers_style.png")],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["consoleErrors"] == [] and report["vectorTileLayers"] == 1
    # at z14 over the town: boundaries, roads, per-grid counts and stall sites from the one dataset source
    assert {"districts", "roads", "manhole_covers", "stall_sites"} <= set(report["bySourceLayer"]), report
    # the bbox strategy's loader follows next links past the 10,000 one page may hold
    features = report["features"]
    assert features["ok"] and features["loaded"] == features["matched"] > 10_000 and features["pages"] >= 2, features
    (ARTIFACTS / "openlayers_features.json").write_text(json.dumps(features))
    # the items page's own map (MapLibre from /map/vendor/) draws the page's features
    assert report["htmlMap"]["ready"] and report["htmlMap"]["drawn"] > 0, report["htmlMap"]


@pytest.mark.slow
def test_owslib_searches_with_cql2_json_by_get_and_by_post(live_server, city_db):
    from owslib.ogcapi.features import Features

    from gis.db import open_connection

    expression = {"op": "and", "args": [{"op": ">", "args": [{"property": "capacity"}, 30]},
                                        {"op": "=", "args": [{"property": "district_code"}, "321302"]}]}
    page = Features(live_server).collection_items("stall_sites", filter=json.dumps(expression), limit=1000,
                                                  **{"filter-lang": "cql2-json"})
    with open_connection(city_db) as conn:
        expected = conn.execute("SELECT count(*) AS n FROM city.stall_site WHERE capacity > 30 "
                                "AND district_code = '321302'").fetchone()["n"]
    assert page["numberMatched"] == expected == len(page["features"]) and expected > 0
    # OWSLib's cql= POSTs the expression to /items (also create-feature): answered as the same search
    posted = Features(live_server).collection_items("stall_sites", cql=expression, limit=1000)
    assert sorted(f["id"] for f in posted["features"]) == sorted(f["id"] for f in page["features"])
    read_only = Features(live_server).collection_items("districts", cql={"op": "=", "args": [{"property": "code"}, "321302"]})
    assert [f["id"] for f in read_only["features"]] == ["321302"]
    # a feature posted without a key is still a create: refused for want of a key, not searched
    created = httpx.post(f"{live_server}/collections/stall_sites/items", json={"type": "Feature", "geometry": None,
                                                                             "properties": {"code": "T16"}})
    assert created.status_code == 401
