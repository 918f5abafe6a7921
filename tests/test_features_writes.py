"""OGC API Features Part 4 on editable layers: roles, districts, ETags, validation; nothing written on refusal."""

from __future__ import annotations

import pytest

from gis.db import open_connection
from tests.conftest import bearer

SUCHENG, SUYU = "321302", "321311"


def stall(code: str, district: str, lon: float = 118.29, **extra) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, 33.95]},
            "properties": {"code": code, "name": f"测试 {code}", "capacity": 10, "district_code": district, **extra}}


def count(city_db, code: str) -> int:
    with open_connection(city_db) as conn:
        return conn.execute("SELECT count(*) AS n FROM city.stall_site WHERE code LIKE %s", [code]).fetchone()["n"]


@pytest.fixture
def created(client, keys, city_db):
    on_sucheng_ground = {"geometry": {"type": "Point", "coordinates": ground_point(city_db, SUCHENG)}}
    response = client.post("/collections/stall_sites/items", json=stall("T6-A", SUCHENG) | on_sucheng_ground,
                           headers=bearer(keys["editor"]))
    assert response.status_code == 201, response.text
    path = response.headers["Location"].removeprefix(str(client.base_url))
    yield path
    with open_connection(city_db) as conn:
        conn.execute("DELETE FROM city.stall_site WHERE code LIKE 'T6-%'")
        conn.commit()


def test_create_read_patch_replace_delete(client, keys, created):
    editor = bearer(keys["editor"])
    first = client.get(created)
    assert first.json()["properties"]["name"] == "测试 T6-A"
    etag = first.headers["ETag"]
    patched = client.patch(created, json={"properties": {"occupied": 4}}, headers={**editor, "If-Match": etag})
    assert patched.status_code == 204 and patched.headers["ETag"] != etag
    assert client.get(created).json()["properties"]["occupied"] == 4
    # lat/lon body in EPSG:4490, as Content-Crs says
    replaced = client.put(created, json=stall("T6-A", SUCHENG, capacity=20) | {"geometry": {"type": "Point", "coordinates": [33.96, 118.3]}},
                          headers={**editor, "If-Match": patched.headers["ETag"], "Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/4490>"})
    assert replaced.status_code == 204, replaced.text
    now = client.get(created)
    assert now.json()["properties"]["capacity"] == 20 and now.json()["properties"]["occupied"] == 0
    assert now.json()["geometry"]["coordinates"] == pytest.approx([118.3, 33.96])
    assert client.delete(created, headers={**editor, "If-Match": now.headers["ETag"]}).status_code == 204
    assert client.get(created).status_code == 404


def test_stale_or_missing_etag_changes_nothing(client, keys, created):
    editor = bearer(keys["editor"])
    etag = client.get(created).headers["ETag"]
    assert client.patch(created, json={"properties": {"occupied": 1}}, headers={**editor, "If-Match": etag}).status_code == 204
    stale = client.put(created, json=stall("T6-A", SUCHENG, occupied=9), headers={**editor, "If-Match": etag})
    assert stale.status_code == 412 and "changed since" in stale.json()["description"]
    assert client.delete(created, headers=editor).status_code == 428
    assert client.get(created).json()["properties"]["occupied"] == 1


def ground_point(city_db, district: str) -> list[float]:
    """A point inside a unit grid of the district (so it lies in the district on the ground)."""
    with open_connection(city_db) as conn:
        row = conn.execute("SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT ST_PointOnSurface(geom) AS p FROM city.unit_grid "
                           "WHERE district_code = %s ORDER BY bgcode LIMIT 1) g", [district]).fetchone()
    return [row["x"], row["y"]]


def test_roles_and_districts(client, keys, created, city_db):
    assert client.post("/collections/stall_sites/items", json=stall("T6-B", SUCHENG)).status_code == 401
    assert client.post("/collections/stall_sites/items", json=stall("T6-B", SUCHENG), headers=bearer(keys["viewer"])).status_code == 403
    scoped = bearer(keys["editor_sucheng"])
    # on 宿豫 ground but labelled 宿城: the ground decides (issue 13)
    outside = client.post("/collections/stall_sites/items", headers=scoped,
                          json=stall("T6-C", SUCHENG) | {"geometry": {"type": "Point", "coordinates": ground_point(city_db, SUYU)}})
    assert outside.status_code == 403 and SUYU in outside.json()["description"]
    assert count(city_db, "T6-C") == 0
    etag = client.get(created).headers["ETag"]
    relabelled = client.patch(created, json={"properties": {"district_code": SUYU}}, headers={**scoped, "If-Match": etag})
    assert relabelled.status_code == 400  # the district follows from the geometry; a label is not a change
    moved = client.patch(created, json={"geometry": {"type": "Point", "coordinates": ground_point(city_db, SUYU)}},
                         headers={**scoped, "If-Match": etag})
    assert moved.status_code == 403 and SUYU in moved.json()["description"]
    assert client.get(created).json()["properties"]["district_code"] == SUCHENG
    assert client.patch(created, json={"properties": {"occupied": 2}}, headers={**scoped, "If-Match": etag}).status_code == 204


@pytest.mark.parametrize("body, reason", [
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[118.2, 33.9], [118.3, 34.0], [118.3, 33.9], [118.2, 34.0], [118.2, 33.9]]]},
      "properties": {"district_code": SUCHENG}}, "Self-intersection"),
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [118.2, 33.9]}, "properties": {"district_code": SUCHENG}}, "MultiPolygon"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[118.2]]]}, "properties": {}}, "GeoJSON"),
    ({"type": "FeatureCollection", "features": []}, "GeoJSON Feature"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[118.2, 33.9], [118.21, 33.9], [118.21, 33.91], [118.2, 33.9]]]},
      "properties": {"district_code": SUCHENG, "floors": -2}}, "rejected by"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[118.2, 33.9], [118.21, 33.9], [118.21, 33.91], [118.2, 33.9]]]},
      "properties": {"district_code": SUCHENG, "floors": "many"}}, "invalid input syntax"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[118.2, 33.9], [118.21, 33.9], [118.21, 33.91], [118.2, 33.9]]]},
      "properties": {"nosuch": 1}}, "unknown properties nosuch"),
])
def test_invalid_features_are_refused_with_a_reason(client, keys, city_db, body, reason):
    with open_connection(city_db) as conn:
        before = conn.execute("SELECT count(*) AS n FROM city.building").fetchone()["n"]
    response = client.post("/collections/buildings/items", json=body, headers=bearer(keys["editor"]))
    assert response.status_code == 400, response.text
    assert reason in response.json()["description"]
    with open_connection(city_db) as conn:
        assert conn.execute("SELECT count(*) AS n FROM city.building").fetchone()["n"] == before


def test_gbt_codes_are_checked_and_widened(client, keys, city_db):
    editor = bearer(keys["editor"])
    bad = client.post("/collections/components/items", headers=editor, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [118.29, 33.95]},
        "properties": {"objcode": "32130201", "objname": "x"}})
    assert bad.status_code == 400 and "16 digits" in bad.json()["description"]
    with open_connection(city_db) as conn:
        grid = conn.execute("SELECT bgcode FROM city.unit_grid WHERE district_code = %s LIMIT 1", [SUCHENG]).fetchone()["bgcode"]
    legacy = grid[:12] + grid[13:]  # the 14-digit CJ/T 213-2005 form of the same grid
    point = ground_point(city_db, SUCHENG)
    made = client.post("/collections/components/items", headers=editor, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": point},
        "properties": {"objcode": "3213020301999001", "objname": "测试公厕", "bgcode": legacy}})
    assert made.status_code == 201, made.text
    path = made.headers["Location"].removeprefix(str(client.base_url))
    with open_connection(city_db) as conn:  # the body's bgcode is ignored: the grid is the one the point lies in
        ground = conn.execute("SELECT bgcode FROM city.unit_grid WHERE ST_Intersects(geom, ST_SetSRID(ST_Point(%s, %s), 4490))",
                              point).fetchone()["bgcode"]
    assert client.get(path).json()["properties"]["bgcode"] == ground
    assert client.delete(path, headers={**editor, "If-Match": "*"}).status_code == 204


def test_read_only_collection_refuses_writes(client, keys):
    response = client.post("/collections/districts/items", json=stall("T6-D", SUCHENG), headers=bearer(keys["admin"]))
    assert response.status_code == 405 and "read-only" in response.json()["description"]
