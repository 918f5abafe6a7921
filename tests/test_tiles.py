"""Vector tiles through the API: real tiles built by PostGIS, decoded with mapbox-vector-tile."""

from __future__ import annotations

import mapbox_vector_tile
import morecantile
import pytest
import shapely
from pydantic import ValidationError
from shapely.geometry import box, shape

from gis.db import open_connection
from layers.catalogue import Layer
from layers.live import LiveCatalogue
from tiles.matrix_sets import CGCS2000_QUAD

get_layer = LiveCatalogue().get  # the static declarations

TILES_CONF = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
CENTRE = (118.28, 33.96)  # the demo city's centre
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
MAX_TILE_BYTES = 500 * 1024


def tile_path(z: int, prefix: str = "/tiles", tms=WEB_MERCATOR, lnglat=CENTRE) -> str:
    tile = tms.tile(*lnglat, z)
    return f"{prefix}/{tms.id}/{z}/{tile.y}/{tile.x}"


def decode(response) -> dict:
    assert response.status_code in (200, 204), response.text
    assert response.status_code == 204 or response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(response.content) if response.content else {}


def test_conformance_and_landing_advertise_tiles(client):
    conforms = client.get("/conformance").json()["conformsTo"]
    for name in ("core", "tileset", "tilesets-list", "geodata-tilesets", "dataset-tilesets", "mvt", "oas30"):
        assert TILES_CONF + name in conforms
    rels = {link["rel"] for link in client.get("/").json()["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector" in rels


def test_tile_matrix_sets_from_morecantile(client):
    ids = [tms["id"] for tms in client.get("/tileMatrixSets").json()["tileMatrixSets"]]
    assert ids == ["WebMercatorQuad", "WorldCRS84Quad", "CGCS2000Quad"]
    cgcs = client.get("/tileMatrixSets/CGCS2000Quad").json()
    assert cgcs["crs"].endswith("/EPSG/0/4490")
    assert (cgcs["tileMatrices"][0]["matrixWidth"], cgcs["tileMatrices"][0]["matrixHeight"]) == (2, 1)


def test_tile_matrix_sets_are_tms_2_documents(client):
    for tms_id in ("WebMercatorQuad", "WorldCRS84Quad", "CGCS2000Quad"):
        assert morecantile.TileMatrixSet.model_validate(client.get(f"/tileMatrixSets/{tms_id}").json()).id == tms_id


def test_a_collection_links_to_its_tilesets(client):
    links = client.get("/collections/stall_sites").json()["links"]
    tilesets = [link["href"] for link in links if link["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"]
    assert [href.split("/", 3)[3] for href in tilesets] == ["collections/stall_sites/tiles"]


def test_tileset_metadata_links_to_tiles(client):
    tilesets = client.get("/collections/manhole_covers/tiles").json()["tilesets"]
    assert {t["dataType"] for t in tilesets} == {"vector"}
    meta = client.get("/collections/manhole_covers/tiles/WebMercatorQuad").json()
    item = next(link for link in meta["links"] if link["rel"] == "item")
    assert item["href"].endswith("/collections/manhole_covers/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}")
    assert meta["layers"][0]["id"] == "manhole_covers"
    assert "sensor_state" in meta["layers"][0]["propertiesSchema"]["properties"]
    dataset = client.get("/tiles/WebMercatorQuad").json()
    assert len(dataset["layers"]) == len(client.app.state.catalogue.layers)


def test_collection_tile_holds_declared_properties_only(client):
    layers = decode(client.get(tile_path(15, "/collections/manhole_covers/tiles")))
    features = layers["manhole_covers"]["features"]
    assert features
    declared = {"objcode", "objname", "class_code", "bgcode", "objstate", "district_code", "sensor_state", "battery_pct"}
    for feature in features:
        assert set(feature["properties"]) <= declared
        assert feature["geometry"]["type"] == "Point"
        assert feature["properties"]["sensor_state"] in ("normal", "alarm", "offline", "unmonitored")


def test_tiles_below_the_detail_zoom_carry_the_key_and_styled_properties_only(client):
    stall_sites = client.app.state.catalogue.get("stall_sites")
    assert stall_sites.style_properties == {"occupied"}
    lean = decode(client.get(tile_path(stall_sites.minzoom, "/collections/stall_sites/tiles")))["stall_sites"]["features"]
    full = decode(client.get(tile_path(stall_sites.detail_minzoom, "/collections/stall_sites/tiles")))["stall_sites"]["features"]
    assert lean and full
    assert all(set(f["properties"]) <= {"id", "occupied"} and "id" in f["properties"] for f in lean)
    assert any(set(f["properties"]) == {"id", *stall_sites.properties} for f in full)


def test_grid_meshes_below_their_linework_zoom_are_each_edge_once(client, city_db):
    unit_grids = client.app.state.catalogue.get("unit_grids")
    z = unit_grids.minzoom
    tile = WEB_MERCATOR.tile(*CENTRE, z)
    layer = decode(client.get(tile_path(z, "/collections/unit_grids/tiles")))["unit_grids"]
    assert layer["features"] and all(f["properties"] == {} for f in layer["features"])
    assert {f["geometry"]["type"] for f in layer["features"]} <= {"LineString", "MultiLineString"}
    drawn_lines = [shape(f["geometry"]) for f in layer["features"]]
    lines = shapely.union_all(drawn_lines).intersection(box(0, 0, layer["extent"], layer["extent"]))
    with open_connection(city_db) as conn:
        truth = conn.execute(
            "SELECT ST_Length(ST_Intersection(ST_Union(ST_Boundary(ST_SnapToGrid(geom_3857, (ST_XMax(e) - ST_XMin(e)) / 4096))), e)) AS edges, "
            "sum(ST_Length(ST_Intersection(ST_Boundary(geom_3857), e))) AS rings, count(*) AS cells, "
            "ST_XMax(e) - ST_XMin(e) AS width "
            "FROM city.unit_grid, ST_TileEnvelope(%s, %s, %s) e WHERE geom_3857 && e GROUP BY e",
            [tile.z, tile.x, tile.y]).fetchone()
    drawn = lines.length * truth["width"] / layer["extent"]
    assert drawn == pytest.approx(truth["edges"], rel=0.03)   # every edge, once
    assert truth["edges"] < 0.7 * truth["rings"]                # the rings drew shared edges twice
    assert sum(shapely.get_num_geometries(drawn_lines)) < truth["cells"]  # rows of cells merged into lines
    detail = decode(client.get(tile_path(unit_grids.linework_below, "/collections/unit_grids/tiles")))["unit_grids"]
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") and f["properties"]["bgcode"] for f in detail["features"])


def test_linework_is_for_polygon_layers_drawn_as_lines():
    grids = get_layer("unit_grids")
    with pytest.raises(ValidationError, match="polygon layer"):
        Layer(**{**grids.model_dump(), "geometry_type": "Point"})
    with pytest.raises(ValidationError, match="line style"):
        Layer(**{**grids.model_dump(), "style": {"type": "fill", "paint": {}}})
    with pytest.raises(ValidationError, match="above minzoom"):
        Layer(**{**grids.model_dump(), "minzoom": grids.linework_below})


def test_dataset_tile_carries_all_layers_and_clips(client):
    layers = decode(client.get(tile_path(14)))
    assert {"districts", "buildings", "manhole_covers", "roads", "unit_grids"} <= set(layers)
    extent = layers["districts"]["extent"]
    # A district is far larger than a z14 tile: its polygon is clipped to the tile plus its buffer.
    for feature in layers["districts"]["features"]:
        xs, ys = _coordinates(feature["geometry"]["coordinates"])
        assert min(xs) >= -64 and max(xs) <= extent + 64
        assert min(ys) >= -64 and max(ys) <= extent + 64


def _coordinates(nested) -> tuple[list[float], list[float]]:
    if isinstance(nested[0], (int, float)):
        return [nested[0]], [nested[1]]
    xs, ys = [], []
    for part in nested:
        px, py = _coordinates(part)
        xs += px
        ys += py
    return xs, ys


def test_collections_parameter_selects_layers(client):
    layers = decode(client.get(tile_path(14) + "?collections=buildings,roads"))
    assert set(layers) == {"buildings", "roads"}


def test_below_minzoom_counts_per_grid(client, city_db):
    layers = decode(client.get(tile_path(8, "/collections/manhole_covers/tiles")))
    counts = [f["properties"]["count"] for f in layers["manhole_covers"]["features"]]
    with open_connection(city_db) as conn:
        total = conn.execute("SELECT count(*) AS n FROM city.manhole_cover_v").fetchone()["n"]
    assert set(layers["manhole_covers"]["features"][0]["properties"]) == {"count"}
    # every cover of the city is counted in the tiles around it at z8 (the city spans few tiles)
    assert 0 < sum(counts) <= total
    whole = sum(f["properties"]["count"] for f in decode(client.get(tile_path(0, "/collections/manhole_covers/tiles")))["manhole_covers"]["features"])
    assert whole == total


def test_layer_without_lowzoom_is_empty_below_minzoom(client):
    assert client.get(tile_path(10, "/collections/buildings/tiles")).status_code == 204


def test_filter_on_tiles(client, city_db):
    with open_connection(city_db) as conn:
        alarms = conn.execute("SELECT count(*) AS n FROM city.manhole_sensor WHERE state = 'alarm'").fetchone()["n"]
    assert alarms > 0
    # at z0 the filtered layer is counted from the rows themselves
    layers = decode(client.get(tile_path(0, "/collections/manhole_covers/tiles") + "?filter=sensor_state='alarm'"))
    assert sum(f["properties"]["count"] for f in layers["manhole_covers"]["features"]) == alarms
    # at z16 the filter keeps exactly the rows it names, in a tile that also holds rows it drops
    with open_connection(city_db) as conn:
        cover = conn.execute("SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM city.manhole_cover_v WHERE sensor_state <> 'normal' "
                             "ORDER BY geom <-> ST_SetSRID(ST_Point(%s, %s), 4490) LIMIT 1", CENTRE).fetchone()
        tile = WEB_MERCATOR.tile(cover["lon"], cover["lat"], 16)
        expected = conn.execute("SELECT objcode, sensor_state FROM city.manhole_cover_v, ST_TileEnvelope(%s, %s, %s) e "
                                "WHERE ST_Intersects(geom_3857, e) AND sensor_state <> 'normal'", [tile.z, tile.x, tile.y]).fetchall()
    path = f"/collections/manhole_covers/tiles/WebMercatorQuad/16/{tile.y}/{tile.x}"
    unfiltered = decode(client.get(path))["manhole_covers"]["features"]
    assert "normal" in {f["properties"]["sensor_state"] for f in unfiltered}
    filtered = decode(client.get(path + "?filter=sensor_state<>'normal'"))["manhole_covers"]["features"]
    assert filtered and {f["properties"]["sensor_state"] for f in filtered} <= {"alarm", "offline", "unmonitored"}
    # every filtered row inside the tile is there (the buffer may add neighbours)
    assert {(r["objcode"], r["sensor_state"]) for r in expected} <= {(f["properties"]["objcode"], f["properties"]["sensor_state"]) for f in filtered}


def test_filter_on_dataset_tiles_applies_to_every_collection(client, city_db):
    with open_connection(city_db) as conn:
        district = conn.execute("SELECT district_code FROM city.manhole_cover_v ORDER BY geom <-> ST_SetSRID(ST_Point(%s, %s), 4490) LIMIT 1",
                                CENTRE).fetchone()["district_code"]
    path = tile_path(16) + "?collections=manhole_covers,stall_sites,cases"
    mine = decode(client.get(f"{path}&filter=district_code='{district}'"))
    assert mine.get("manhole_covers") and all(
        f["properties"]["district_code"] == district for layer in mine.values() for f in layer["features"])
    assert decode(client.get(f"{path}&filter=district_code='000000'")) == {}


@pytest.mark.parametrize("path, status, reason", [
    ("/collections/manhole_covers/tiles/WebMercatorQuad/15/1/1?filter=nope='x'", 400, "unknown property 'nope'"),
    ("/collections/manhole_covers/tiles/WebMercatorQuad/15/1/1?filter=sensor_state=", 400, "does not parse"),
    ("/collections/manhole_covers/tiles/WebMercatorQuad/15/1/1?filter=battery_pct>'high'", 400, "numeric"),
    ("/collections/manhole_covers/tiles/WebMercatorQuad/15/1/x", 400, "tileCol"),
    ("/collections/manhole_covers/tiles/WebMercatorQuad/3/8/0", 404, "outside"),
    ("/collections/manhole_covers/tiles/WebMercatorQuad/25/0/0", 404, "tileMatrix 25"),
    ("/collections/manhole_covers/tiles/WebMercatorQuad/-1/0/0", 404, "tileMatrix -1"),
    ("/collections/nowhere/tiles/WebMercatorQuad/3/0/0", 404, "unknown collection"),
    ("/collections/manhole_covers/tiles/Mars/3/0/0", 404, "unknown tile matrix set"),
    ("/tiles/WebMercatorQuad/3/0/0?collections=nowhere", 404, "unknown collection"),
    ("/tiles/WebMercatorQuad/3/0/0?filter=objcode='1'", 400, "collection districts: filter names unknown property 'objcode'"),
])
def test_bad_requests_have_reasons(client, path, status, reason):
    response = client.get(path)
    assert response.status_code == status
    assert reason in response.json()["description"]


def test_etag_and_304(client):
    path = tile_path(13, "/collections/video_cameras/tiles")
    first = client.get(path)
    assert first.headers["Cache-Control"] == "public, no-cache"
    again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize("tms", [CGCS2000_QUAD, WEB_MERCATOR], ids=lambda tms: tms.id)
def test_tile_features_land_where_the_rows_are(client, city_db, tms):
    """Each feature of a z15 tile, read back through the tile's own bounds in its matrix set's CRS,
    lies on its row's coordinates (to the tile's resolution), and every row inside the tile is there."""
    z = 15
    tile = tms.tile(*CENTRE, z)
    layer = decode(client.get(tile_path(z, "/collections/manhole_covers/tiles", tms)))["manhole_covers"]
    bounds = tms.xy_bounds(tile)
    extent = layer["extent"]
    unit = (bounds.right - bounds.left) / extent
    placed = {f["properties"]["objcode"]: (bounds.left + f["geometry"]["coordinates"][0] * unit,
                                           bounds.bottom + f["geometry"]["coordinates"][1] * unit) for f in layer["features"]}
    column = "geom" if tms is CGCS2000_QUAD else "geom_3857"
    with open_connection(city_db) as conn:
        rows = conn.execute(
            f"SELECT objcode, ST_X({column}) AS x, ST_Y({column}) AS y, "
            f"{column} && ST_MakeEnvelope(%s, %s, %s, %s, ST_SRID({column})) AS inside "
            f"FROM city.manhole_cover_v WHERE objcode = ANY(%s) OR {column} && ST_MakeEnvelope(%s, %s, %s, %s, ST_SRID({column}))",
            [*bounds, list(placed), *bounds]).fetchall()
    truth = {r["objcode"]: (r["x"], r["y"]) for r in rows}
    assert len(placed) > 5 and set(placed) <= set(truth)
    for objcode, (x, y) in placed.items():
        assert abs(x - truth[objcode][0]) <= unit and abs(y - truth[objcode][1]) <= unit, (objcode, (x, y), truth[objcode])
    assert {r["objcode"] for r in rows if r["inside"]} <= set(placed)


def test_low_zoom_tiles_stay_small(client):
    """Every dataset tile of the city up to z12, the dense centre included, stays under the limit."""
    west, south, east, north = client.get("/tiles/WebMercatorQuad/tilejson.json").json()["bounds"]
    sizes = {}
    for z in range(0, 13):
        for tile in WEB_MERCATOR.tiles(west, south, east, north, [z]):
            response = client.get(f"/tiles/WebMercatorQuad/{z}/{tile.y}/{tile.x}")
            assert response.status_code in (200, 204)
            sizes[tile] = len(response.content)
    for z in (11, 12):
        assert WEB_MERCATOR.tile(*CENTRE, z) in sizes
    largest = max(sizes, key=sizes.get)
    assert sizes[largest] <= MAX_TILE_BYTES, (largest, sizes[largest])


def test_tilejson_per_layer_and_dataset(client):
    doc = client.get("/collections/manhole_covers/tiles/WebMercatorQuad/tilejson.json").json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"][0].endswith("/collections/manhole_covers/tiles/WebMercatorQuad/{z}/{y}/{x}")
    (layer,) = doc["vector_layers"]
    assert layer["id"] == "manhole_covers" and {"sensor_state", "objcode", "count"} <= set(layer["fields"])
    dataset = client.get("/tiles/WebMercatorQuad/tilejson.json").json()
    assert {vl["id"] for vl in dataset["vector_layers"]} == {layer.id for layer in client.app.state.catalogue.layers}
    west, south, east, north = dataset["bounds"]
    assert west < CENTRE[0] < east and south < CENTRE[1] < north
