"""The tile cache is never stale: plain SQL writes by another program reach the tiles within a
second, layers published while running appear at once, and the change triggers cover the catalogue."""

from __future__ import annotations

import json

import httpx
import mapbox_vector_tile
import morecantile
import psycopg
import pytest

from gis.db import open_connection
from layers.catalogue import CATALOGUE
from tests.support.polling import wait_for

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def layer_features(response, layer: str) -> list[dict]:
    if response.status_code == 204:
        return []
    return mapbox_vector_tile.decode(response.content).get(layer, {"features": []})["features"]


def test_every_catalogue_table_is_watched(city_db):
    with open_connection(city_db) as conn:
        watched = {row["tbl"] for row in conn.execute(
            "SELECT tgrelid::regclass::text AS tbl FROM pg_trigger WHERE tgname LIKE 'cityops_changes_%' "
            "GROUP BY 1 HAVING count(*) = 3").fetchall()}
    assert {table for layer in CATALOGUE for table in layer.tables} <= watched


def test_a_big_update_sends_one_notification_with_the_bbox(city_db):
    """Every stall site of a district moves 0.01° east in one statement: one notification, whose box
    spans where the sites were and where they are now (some now lie in the next district: their
    district is derived from where they lie, so the moved sites are found by id)."""
    district = "321302"
    with open_connection(city_db) as conn:
        saved = conn.execute("SELECT id, geom FROM city.stall_site WHERE district_code = %s", [district]).fetchall()
    assert len(saved) > 50
    try:
        with open_connection(city_db, autocommit=True) as listener, open_connection(city_db) as writer:
            listener.execute("LISTEN cityops_changes")
            old = writer.execute("SELECT ST_Extent(geom) AS e FROM city.stall_site WHERE district_code = %s", [district]).fetchone()["e"]
            moved = writer.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, 0.01, 0) WHERE district_code = %s",
                                   [district]).rowcount
            extent = writer.execute("SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n "
                                    "FROM (SELECT ST_Extent(g) AS e FROM (SELECT geom AS g FROM city.stall_site WHERE id = ANY(%s) "
                                    "UNION ALL SELECT %s::box2d::geometry) u) x", [[r["id"] for r in saved], old]).fetchone()
            writer.commit()
            payloads = [json.loads(n.payload) for n in listener.notifies(timeout=1, stop_after=2)]
    finally:
        with open_connection(city_db) as conn:
            with conn.cursor() as cur:
                cur.executemany("UPDATE city.stall_site SET geom = %s WHERE id = %s", [[r["geom"], r["id"]] for r in saved])
            conn.commit()
    assert moved == len(saved)
    assert payloads == [{"table": "city.stall_site", "bbox": pytest.approx([extent["w"], extent["s"], extent["e"], extent["n"]])}]


@pytest.fixture
def watched_cover(city_db):
    """A normal manhole cover and its z17 tile; the sensor state is put back afterwards."""
    with open_connection(city_db) as conn:
        cover = conn.execute(
            "SELECT objcode, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM city.manhole_cover_v "
            "WHERE sensor_state = 'normal' ORDER BY objcode LIMIT 1").fetchone()
    yield cover, WEB_MERCATOR.tile(cover["lon"], cover["lat"], 17)
    with open_connection(city_db) as conn:
        conn.execute("UPDATE city.manhole_sensor SET state = 'normal' WHERE objcode = %s", [cover["objcode"]])
        conn.commit()


def test_plain_sql_update_reaches_the_cached_tile_within_a_second(live_server, city_db, watched_cover):
    cover, tile = watched_cover
    url = f"{live_server}/collections/manhole_covers/tiles/WebMercatorQuad/17/{tile.y}/{tile.x}"

    def state():
        features = layer_features(httpx.get(url), "manhole_covers")
        return {f["properties"]["objcode"]: f["properties"]["sensor_state"] for f in features}.get(cover["objcode"])

    first = httpx.get(url)
    assert httpx.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304  # cached
    assert state() == "normal"
    with open_connection(city_db) as conn:  # another program, plain SQL
        conn.execute("UPDATE city.manhole_sensor SET state = 'alarm' WHERE objcode = %s", [cover["objcode"]])
        conn.commit()
    _, seconds = wait_for(state, lambda s: s == "alarm")
    assert httpx.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 200
    print(f"change visible in the tile after {seconds:.3f} s")


def test_new_component_changes_the_low_zoom_counts(live_server, city_db):
    url = f"{live_server}/collections/manhole_covers/tiles/WebMercatorQuad/0/0/0"

    def total():
        return sum(f["properties"]["count"] for f in layer_features(httpx.get(url), "manhole_covers"))

    before = total()
    with open_connection(city_db) as conn:
        grid = conn.execute("SELECT bgcode, ST_PointOnSurface(geom) AS geom FROM city.unit_grid "
                            "WHERE district_code = '321302' ORDER BY bgcode LIMIT 1").fetchone()
        objcode = "3213020101999999"
        conn.execute("INSERT INTO city.component (objcode, objname, bgcode, geom) VALUES (%s, '测试井盖', %s, %s)",
                     [objcode, grid["bgcode"], grid["geom"]])
        conn.commit()
    try:
        wait_for(total, lambda n: n == before + 1)
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.component WHERE objcode = %s", [objcode])
            conn.commit()
    wait_for(total, lambda n: n == before)


def test_a_layer_published_at_run_time_appears_at_once(client, city_db):
    with open_connection(city_db) as conn:
        conn.execute("CREATE TABLE city.test_hydrant (id serial PRIMARY KEY, label text NOT NULL, "
                     "geom geometry(Point, 4490) NOT NULL, "
                     "geom_3857 geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED)")
        conn.execute("INSERT INTO city.test_hydrant (label, geom) VALUES ('H1', ST_SetSRID(ST_Point(118.28, 33.96), 4490))")
        conn.execute("INSERT INTO city.published_layer (id, title, relation, key, geometry_type, properties, minzoom, style) "
                     "VALUES ('test_hydrants', '消防栓 Hydrants', 'city.test_hydrant', 'id', 'Point', '{label}', 12, %s)",
                     [json.dumps({"type": "circle", "paint": {"circle-color": "#ff0000"}})])
        conn.commit()
    tile = WEB_MERCATOR.tile(118.28, 33.96, 16)
    path = f"/collections/test_hydrants/tiles/WebMercatorQuad/16/{tile.y}/{tile.x}"
    try:
        labels = lambda: sorted(f["properties"].get("label") for f in layer_features(client.get(path), "test_hydrants"))
        wait_for(lambda: client.get(path).status_code, lambda status: status == 200)
        assert labels() == ["H1"]
        assert "test_hydrants" in {layer["source-layer"] for layer in client.get("/styles/default/style.json").json()["layers"] if "source-layer" in layer}
        assert "test_hydrants" in {vl["id"] for vl in client.get("/tiles/WebMercatorQuad/tilejson.json").json()["vector_layers"]}
        # its table got the change triggers: a new row shows in the cached tile
        with open_connection(city_db) as conn:
            conn.execute("INSERT INTO city.test_hydrant (label, geom) VALUES ('H2', ST_SetSRID(ST_Point(118.2801, 33.9601), 4490))")
            conn.commit()
        wait_for(labels, lambda found: found == ["H1", "H2"])
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.published_layer WHERE id = 'test_hydrants'")
            conn.execute("DROP TABLE city.test_hydrant")
            conn.commit()
    wait_for(lambda: client.get(path).status_code, lambda status: status == 404)


def test_a_published_layer_may_be_drawn_as_linework(client, city_db):
    line_style = json.dumps({"type": "line", "paint": {"line-color": "#ffffff"}})
    with open_connection(city_db) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            with conn.transaction():
                conn.execute("INSERT INTO city.published_layer (id, title, relation, key, geometry_type, minzoom, linework_below, style) "
                             "VALUES ('test_wards', 'Wards', 'city.community', 'code', 'MultiPolygon', 16, 16, %s)", [line_style])
        conn.execute("INSERT INTO city.published_layer (id, title, relation, key, geometry_type, properties, minzoom, linework_below, style) "
                     "VALUES ('test_wards', 'Wards', 'city.community', 'code', 'MultiPolygon', '{name}', 10, 15, %s)", [line_style])
        conn.commit()
    path = lambda z: "/collections/test_wards/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}".format(z=z, t=WEB_MERCATOR.tile(118.28, 33.96, z))
    try:
        wait_for(lambda: client.get(path(14)).status_code, lambda status: status == 200)
        lines = layer_features(client.get(path(14)), "test_wards")
        assert lines and all(f["geometry"]["type"].endswith("LineString") and not f["properties"] for f in lines)
        polygons = layer_features(client.get(path(15)), "test_wards")
        assert polygons and all(f["geometry"]["type"].endswith("Polygon") and f["properties"]["code"] for f in polygons)
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.published_layer WHERE id = 'test_wards'")
            conn.commit()


def test_a_moved_feature_leaves_its_old_tile_and_joins_its_new_one(live_server, city_db, watched_cover):
    """A cover moved by plain SQL to a z17 tile three columns east: both tiles were cached; within a
    second the old one no longer holds it and the new one does, where it now lies."""
    cover, old_tile = watched_cover
    new_tile = morecantile.Tile(old_tile.x + 3, old_tile.y, old_tile.z)
    bounds = WEB_MERCATOR.bounds(new_tile)
    destination = ((bounds.left + bounds.right) / 2, (bounds.bottom + bounds.top) / 2)
    urls = {tile: f"{live_server}/collections/manhole_covers/tiles/WebMercatorQuad/17/{tile.y}/{tile.x}" for tile in (old_tile, new_tile)}

    def holds(tile) -> bool:
        return cover["objcode"] in {f["properties"]["objcode"] for f in layer_features(httpx.get(urls[tile]), "manhole_covers")}

    for tile, url in urls.items():  # both cached before the move
        first = httpx.get(url)
        assert httpx.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert holds(old_tile) and not holds(new_tile)
    with open_connection(city_db) as conn:
        original = conn.execute("SELECT geom FROM city.component WHERE objcode = %s", [cover["objcode"]]).fetchone()["geom"]
        conn.execute("UPDATE city.component SET geom = ST_SetSRID(ST_Point(%s, %s), 4490) WHERE objcode = %s",
                     [*destination, cover["objcode"]])
        conn.commit()
    try:
        wait_for(lambda: (holds(old_tile), holds(new_tile)), lambda seen: seen == (False, True))
    finally:
        with open_connection(city_db) as conn:
            conn.execute("UPDATE city.component SET geom = %s WHERE objcode = %s", [original, cover["objcode"]])
            conn.commit()
    wait_for(lambda: (holds(old_tile), holds(new_tile)), lambda seen: seen == (True, False))
