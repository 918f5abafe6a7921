"""OGC API Features over the demo city: paging, filters, CRS and axis order, formats, bad input."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from pyproj import Transformer

from gis.db import open_connection
from layers.catalogue import CATALOGUE

EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"


@pytest.fixture(scope="module")
def db(city_db):
    with open_connection(city_db) as conn:
        yield conn


def scalar(db, query, *params):
    return next(iter(db.execute(query, params).fetchone().values()))


def test_every_catalogue_layer_is_a_collection(client):
    body = client.get("/collections").json()
    vector = [c["id"] for c in body["collections"] if c.get("dataType") != "map"]  # imagery: raster collections
    assert vector[:len(CATALOGUE)] == [layer.id for layer in CATALOGUE]
    stalls = client.get("/collections/stall_sites").json()
    assert stalls["storageCrs"] == EPSG.format(4490)
    assert {EPSG.format(c) for c in (4326, 4490, 4548, 4549, 3857)} < set(stalls["crs"])
    assert any(link["rel"] == "items" for link in stalls["links"])


def test_paging_walks_every_feature_once(client, db):
    seen, url, pages = [], "/collections/stall_sites/items?limit=400", []
    while url:
        page = client.get(url).json()
        assert page["numberReturned"] == len(page["features"])
        pages.append(page.get("numberMatched"))
        seen += [f["id"] for f in page["features"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    assert seen == [r["id"] for r in db.execute("SELECT id FROM city.stall_site ORDER BY id")]
    # counted on the first page, not again on the page its next link continues (a full 1,000)
    assert pages == [950, None]
    last = client.get("/collections/stall_sites/items?limit=400&offset=800").json()
    assert any(link["rel"] == "prev" for link in last["links"]) and last["numberReturned"] == 150


def test_bbox_datetime_equality_and_cql2_agree_with_sql(client, db):
    def matched(query):
        return client.get(f"/collections/{query}").json()["numberMatched"]

    box = "118.2,33.9,118.3,34.0"
    assert matched(f"stall_sites/items?bbox={box}") == scalar(
        db, "SELECT count(*) FROM city.stall_site WHERE ST_Intersects(geom, ST_MakeEnvelope(118.2, 33.9, 118.3, 34.0, 4490))")
    assert matched("stall_sites/items?district_code=321302") == scalar(
        db, "SELECT count(*) FROM city.stall_site WHERE district_code = '321302'")
    assert matched("stall_sites/items?filter=capacity > 30 AND occupied = 0") == scalar(
        db, "SELECT count(*) FROM city.stall_site WHERE capacity > 30 AND occupied = 0")
    as_json = json.dumps({"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [118.2, 33.9, 118.3, 34.0]}]})
    assert matched(f"stall_sites/items?filter-lang=cql2-json&filter={as_json}") == matched(f"stall_sites/items?bbox={box}")
    since = scalar(db, "SELECT date_trunc('day', max(raised_at))::date::text FROM city.alarm WHERE status <> 'cleared'")
    assert matched(f"alarms/items?datetime={since}/..") == scalar(
        db, "SELECT count(*) FROM city.alarm WHERE status <> 'cleared' AND raised_at >= %s::date", since) > 0


def test_bbox_and_filter_in_lat_lon_crs_select_the_same_features(client):
    """EPSG:4326 and EPSG:4490 take latitude first, in bbox-crs and filter-crs alike."""
    lon_lat = client.get("/collections/stall_sites/items?bbox=118.2,33.9,118.3,34.0").json()["numberMatched"]
    for code in (4326, 4490):
        lat_lon = client.get(f"/collections/stall_sites/items?bbox=33.9,118.2,34.0,118.3&bbox-crs={EPSG.format(code)}")
        assert lat_lon.json()["numberMatched"] == lon_lat
        by_filter = client.get("/collections/stall_sites/items", params={
            "filter": "S_INTERSECTS(geometry, POLYGON((33.9 118.2, 33.9 118.3, 34.0 118.3, 34.0 118.2, 33.9 118.2)))",
            "filter-crs": EPSG.format(code)})
        assert by_filter.json()["numberMatched"] == lon_lat


@pytest.mark.parametrize("code", [4326, 4490, 4548, 4549, 3857])
def test_output_crs_has_the_right_axis_order(client, code):
    crs84 = client.get("/collections/stall_sites/items/1").json()["geometry"]["coordinates"]
    response = client.get(f"/collections/stall_sites/items/1?crs={EPSG.format(code)}")
    assert response.headers["Content-Crs"] == f"<{EPSG.format(code)}>"
    got = response.json()["geometry"]["coordinates"]
    # pyproj without always_xy uses each CRS's own axis order, which is what OGC asks for
    expected = Transformer.from_crs("OGC:CRS84", f"EPSG:{code}").transform(*crs84)
    assert got == pytest.approx(list(expected), abs=1e-3 if code in (4548, 4549, 3857) else 1e-7)


def test_sortby_and_properties(client):
    page = client.get("/collections/unit_grids/items?sortby=-area_m2,%2Bbgcode&properties=bgcode,area_m2&limit=50").json()
    areas = [f["properties"]["area_m2"] for f in page["features"]]
    assert areas == sorted(areas, reverse=True)
    assert set(page["features"][0]["properties"]) == {"bgcode", "area_m2"}


def test_csv_and_geojson_seq_stream_the_same_features(client):
    seq = client.get("/collections/streetlights/items?f=jsonseq&limit=20000&sortby=objcode")
    assert seq.headers["content-type"].startswith("application/geo+json-seq")
    records = [json.loads(r) for r in seq.text.split("\x1e") if r.strip()]
    table = list(csv.DictReader(io.StringIO(client.get("/collections/streetlights/items?f=csv&limit=20000&sortby=objcode").text)))
    assert len(records) == len(table) == 20000
    assert [r["id"] for r in records] == [row["id"] for row in table]
    assert table[0]["geometry"].startswith("POINT(")


def test_queryables_and_html(client):
    schema = client.get("/collections/alarms/queryables").json()
    assert schema["properties"]["raised_at"] == {"title": "raised_at", "type": "string", "format": "date-time"}
    assert schema["properties"]["geometry"]["format"] == "geometry-point"
    for path in ("/collections", "/collections/stall_sites", "/collections/stall_sites/items", "/collections/stall_sites/items/1",
                 "/collections/stall_sites/queryables"):
        page = client.get(path, headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
    assert "宿迁市区疏导点1" in client.get("/collections/stall_sites/items/1?f=html").text


def test_conformance_and_openapi_document_what_is_served(client):
    conformance = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in conformance
    document = client.get("/api").json()
    assert document["openapi"].startswith("3.0.")  # what the oas30 classes and the service-desc type say
    paths = document["paths"]
    items = paths["/collections/stall_sites/items"]
    shared = document["components"]["parameters"]
    names = {shared[p["$ref"].rsplit("/", 1)[1]]["name"] if "$ref" in p else p["name"] for p in items["get"]["parameters"]}
    assert {"limit", "offset", "bbox", "bbox-crs", "crs", "datetime", "filter", "filter-lang", "filter-crs",
            "sortby", "properties", "f", "district_code", "capacity"} <= names
    assert "post" in items and "post" not in paths["/collections/districts/items"]
    assert {"put", "patch", "delete", "get"} <= set(paths["/collections/stall_sites/items/{featureId}"])
    # one shared page-size parameter (QGIS reads its maximum there), referenced by every items operation
    assert shared["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1_000}
    assert all({"$ref": "#/components/parameters/limit"} in operations["get"]["parameters"]
               for path, operations in paths.items() if path.endswith("/items"))
    assert client.get("/collections/stall_sites/items").json()["numberReturned"] == 950  # the default page is 1,000
    operation_ids = [operation["operationId"] for operations in paths.values() for operation in operations.values()
                     if isinstance(operation, dict) and "operationId" in operation]
    assert len(operation_ids) == len(set(operation_ids))  # code generators and schemathesis key operations by id


@pytest.mark.parametrize("url, path", [
    ("/?f=html", "/"), ("/conformance?f=html", "/conformance"), ("/collections?f=html", "/collections"),
    ("/collections/stall_sites?f=html", "/collections/stall_sites"),
    ("/collections/stall_sites/queryables?f=html", "/collections/stall_sites/queryables"),
    ("/evaluation?days=1&f=csv", "/evaluation"), ("/open311/v2/services.xml", "/open311/v2/services.{fmt}"),
    ("/collections/stall_sites/items?limit=1&bbox=1,2,3", "/collections/stall_sites/items"),
    ("/evaluation?days=999", "/evaluation"), ("/collections/stall_sites/items/999999", "/collections/stall_sites/items/{featureId}"),
    ("/open311/v2/media/nosuch.jpg", "/open311/v2/media/{name}.jpg"),
    ("/open311/v2/requests.xml?status=x", "/open311/v2/requests.{fmt}"), ("/open311/v2/requests.json?status=x", "/open311/v2/requests.{fmt}"),
])
def test_the_openapi_declares_what_each_answer_is(client, url, path):
    # schemathesis (content_type / status_code conformance) found HTML, CSV and XML answers the OpenAPI
    # did not declare, and a 422 + HTTPValidationError declared where every refusal is a 400 + exception
    document = client.get("/api").json()
    answer = client.get(url)
    responses = document["paths"][path]["get"]["responses"]
    declared = responses.get(str(answer.status_code), responses.get("default"))
    assert answer.headers["content-type"].split(";")[0] in declared["content"]
    schema = declared["content"].get("application/json", {}).get("schema", {})
    if answer.status_code >= 400 and answer.headers["content-type"].startswith("application/json"):
        shapes = [document["components"]["schemas"]["Exception"] if "$ref" in option else option
                  for option in schema.get("oneOf", [schema])]
        assert ("array" if isinstance(answer.json(), list) else "object") in {shape["type"] for shape in shapes}
    assert "422" not in json.dumps(document["paths"]) and "HTTPValidationError" not in json.dumps(document)


def test_next_links_ask_for_a_full_page_after_a_small_first_one(client):
    # GDAL 3.6 always asks for limit=10 and then follows next links
    page = client.get("/collections/unit_grids/items?limit=10").json()
    assert page["numberReturned"] == 10
    following = client.get(next(l["href"] for l in page["links"] if l["rel"] == "next")).json()
    assert following["numberReturned"] == 1_000 and following["features"][0]["id"] > page["features"][-1]["id"]
    html_page = client.get("/collections/unit_grids/items?limit=10&f=html").text
    next_html = re.search(r'href="([^"]*cursor=[^"]*)"', html_page).group(1)
    assert "limit=10&" in next_html or next_html.endswith("limit=10")  # people keep the page size they chose


@pytest.mark.parametrize("url, status, reason", [
    ("/collections/nosuch/items", 404, "unknown layer 'nosuch'"),
    ("/collections/stall_sites/items/999999", 404, "no feature"),
    ("/collections/stall_sites/items/abc", 404, "no feature"),
    ("/collections/stall_sites/items?limit=10001", 400, "maximum"),
    ("/collections/stall_sites/items?limit=0", 400, "limit"),
    ("/collections/stall_sites/items?bbox=118.2,33.9,118.3", 400, "3 numbers"),
    ("/collections/stall_sites/items?bbox=13170000,4020000,13160000,4030000&bbox-crs=" + EPSG.format(3857), 400, "exceeds"),
    ("/collections/stall_sites/items?bbox=118.2,34.0,118.3,33.9", 400, "above"),
    ("/collections/stall_sites/items?bbox=a,b,c,d", 400, "numbers"),
    ("/collections/stall_sites/items?crs=" + EPSG.format(32650), 400, "not served"),
    ("/collections/stall_sites/items?bbox-crs=EPSG:2000&bbox=1,2,3,4", 400, "not served"),
    ("/collections/stall_sites/items?filter=capacity >", 400, "does not parse"),
    ("/collections/stall_sites/items?filter=nosuch = 1", 400, "unknown property 'nosuch'"),
    ("/collections/stall_sites/items?filter-lang=cql3&filter=capacity>1", 400, "filter-lang"),
    ("/collections/stall_sites/items?capacity=many", 400, "numeric"),
    ("/collections/stall_sites/items?sortby=geometry", 400, "sortable"),
    ("/collections/stall_sites/items?properties=nosuch", 400, "nosuch"),
    ("/collections/stall_sites/items?datetime=2025-13-40", 400, "RFC 3339"),
    ("/collections/districts/items?datetime=2025-01-01", 400, "no temporal"),
    ("/collections/stall_sites/items?nosuch=1", 400, "nosuch"),
    ("/collections/alarms/items?filter=T_AFTER(raised_at, TIMESTAMP('2025-99-01T00:00:00Z'))", 400, "2025-99-01"),
])
def test_bad_input_is_a_4xx_with_a_reason(client, url, status, reason):
    response = client.get(url)
    assert response.status_code == status, response.text
    assert reason in response.json()["description"]
