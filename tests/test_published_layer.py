"""A layer published at run time (a row in `city.published_layer`) is served by everything at
once: collection document, items, queryables, a CQL2-filtered page, an export, the planners'
queries, tiles and the OpenAPI document — and gone from all of them when it is withdrawn."""

from __future__ import annotations

import json

import mapbox_vector_tile
import morecantile
import numpy as np
import pyogrio
import pytest

from gis.db import open_connection
from tests.support.polling import wait_for

LAYER = "test_pub_hydrants"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture()
def hydrants(client, city_db):
    """Forty hydrants with random pressures around the city centre, published as a layer."""
    rng = np.random.default_rng(20)
    lons, lats = 118.27 + 0.02 * rng.random(40), 33.95 + 0.02 * rng.random(40)
    pressures = np.round(1 + 5 * rng.random(40), 2)
    with open_connection(city_db) as conn:
        conn.execute("CREATE TABLE city.test_pub_hydrant (id serial PRIMARY KEY, label text NOT NULL, "
                     "pressure_bar double precision NOT NULL, geom geometry(Point, 4490) NOT NULL, "
                     "geom_3857 geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO city.test_pub_hydrant (label, pressure_bar, geom) "
                            "VALUES (%s, %s, ST_SetSRID(ST_Point(%s, %s), 4490))",
                            [(f"H{i}", float(p), float(x), float(y)) for i, (p, x, y) in enumerate(zip(pressures, lons, lats))])
        conn.execute("INSERT INTO city.published_layer (id, title, \"group\", relation, key, geometry_type, properties, "
                     "district_column, minzoom, style) VALUES (%s, '消防栓 Hydrants', 'base', 'city.test_pub_hydrant', 'id', "
                     "'Point', '{label,pressure_bar}', NULL, 10, %s)",
                     [LAYER, json.dumps({"type": "circle", "paint": {"circle-color": "#ff0000"}})])
        conn.commit()
    wait_for(lambda: client.get(f"/collections/{LAYER}").status_code, lambda status: status == 200)
    yield {"lons": lons, "lats": lats, "pressures": pressures}
    with open_connection(city_db) as conn:
        conn.execute("DELETE FROM city.published_layer WHERE id = %s", [LAYER])
        conn.commit()
    wait_for(lambda: client.get(f"/collections/{LAYER}/items").status_code, lambda status: status == 404)
    with open_connection(city_db) as conn:
        conn.execute("DROP TABLE city.test_pub_hydrant")
        conn.commit()


def test_a_layer_published_at_run_time_is_served_everywhere(client, hydrants, tmp_path):
    pressures = hydrants["pressures"]
    assert LAYER in [c["id"] for c in client.get("/collections").json()["collections"]]
    document = client.get(f"/collections/{LAYER}").json()
    west, south, east, north = document["extent"]["spatial"]["bbox"][0]
    assert west == pytest.approx(hydrants["lons"].min()) and north == pytest.approx(hydrants["lats"].max())

    page = client.get(f"/collections/{LAYER}/items?limit=100").json()
    assert page["numberMatched"] == 40 and len(page["features"]) == 40

    queryables = client.get(f"/collections/{LAYER}/queryables").json()["properties"]
    assert queryables["pressure_bar"]["type"] == "number" and queryables["label"]["type"] == "string"

    threshold = float(np.median(pressures))
    filtered = client.get(f"/collections/{LAYER}/items", params={"filter": f"pressure_bar > {threshold}", "limit": 100}).json()
    assert filtered["numberMatched"] == int((pressures > threshold).sum())
    assert all(f["properties"]["pressure_bar"] > threshold for f in filtered["features"])
    assert client.get(f"/collections/{LAYER}/items", params={"filter": "nosuch = 1"}).status_code == 400

    one = filtered["features"][0]
    assert client.get(f"/collections/{LAYER}/items/{one['id']}").json()["properties"] == one["properties"]

    export = client.get(f"/exports/{LAYER}.gpkg")
    assert export.status_code == 200, export.text
    (tmp_path / "h.gpkg").write_bytes(export.content)
    assert pyogrio.read_info(str(tmp_path / "h.gpkg"), force_feature_count=True)["features"] == 40

    here = (float(hydrants["lons"][7]), float(hydrants["lats"][7]))
    nearest = client.get(f"/queries/nearest/{LAYER}", params={"lon": here[0], "lat": here[1], "n": 3}).json()
    assert len(nearest["features"]) == 3 and str(nearest["features"][0]["id"]) == "8"  # serial ids start at 1

    tile = WEB_MERCATOR.tile(*here, 16)  # from detail_minzoom a tile carries every property
    response = client.get(f"/collections/{LAYER}/tiles/WebMercatorQuad/16/{tile.y}/{tile.x}")
    assert response.status_code == 200
    assert "H7" in {f["properties"]["label"] for f in mapbox_vector_tile.decode(response.content)[LAYER]["features"]}

    paths = client.get("/api").json()["paths"]
    items = paths[f"/collections/{LAYER}/items"]
    # limit is the shared components/parameters/limit (QGIS and GDAL read it there)
    assert {"pressure_bar", "label", "filter", "limit"} <= {p.get("name") or p["$ref"].rsplit("/", 1)[-1]
                                                            for p in items["get"]["parameters"]}
    assert "post" not in items  # not editable


def test_a_layer_published_at_run_time_is_read_only_unless_editable(client, hydrants, keys):
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [118.28, 33.96]},
               "properties": {"label": "new", "pressure_bar": 2.0}}
    response = client.post(f"/collections/{LAYER}/items", json=feature,
                           headers={"Authorization": f"Bearer {keys['editor']}"})
    assert response.status_code == 405 and "read-only" in response.json()["description"]


def test_a_published_layer_cannot_take_the_imagery_collections_id(client, hydrants, city_db):
    """`imagery` is the latest-imagery mosaic's collection: a vector layer published under that id
    is left out of the catalogue (logged) instead of hiding the raster collection."""
    row = ("INSERT INTO city.published_layer (id, title, \"group\", relation, key, geometry_type, properties, style) "
           "VALUES (%s, 'clash', 'base', 'city.test_pub_hydrant', 'id', 'Point', '{label}', %s)")
    style = json.dumps({"type": "circle", "paint": {}})
    with open_connection(city_db) as conn:
        conn.execute(row, ["imagery", style])
        conn.execute(row, ["test_pub_after_clash", style])  # seen once the catalogue has reloaded both
        conn.commit()
    try:
        wait_for(lambda: client.get("/collections/test_pub_after_clash").status_code, lambda status: status == 200)
        vector = [c for c in client.get("/collections").json()["collections"]
                  if c["id"] == "imagery" and c.get("itemType") == "feature"]
        assert vector == []
        assert client.get("/collections/imagery/items").status_code == 404
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.published_layer WHERE id IN ('imagery', 'test_pub_after_clash')")
            conn.commit()
