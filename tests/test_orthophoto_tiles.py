"""Orthophoto renditions, raster tiles and their cache, the imagery mosaic, and OGC clients over HTTP.

Small real rasters (a few hundred px at 0.1 m in EPSG:4548, inside the demo city's area) go
through the real ingest into a throwaway database; tiles are decoded with Pillow; GDAL (the
venv's rasterio and Debian's gdalinfo) reads the live server over HTTP.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import morecantile
import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from fastapi.testclient import TestClient
from PIL import Image
from pmtiles.reader import MmapSource
from pmtiles.reader import Reader as PMTilesReader
from pmtiles.tile import TileType
from rio_cogeo.cogeo import cog_validate

from api.app import create_app, extensions
from bench.servers import free_port, running
from drone.ingest import ingest_orthophoto, make_display_rendition, replace_orthophoto
from gis import orthophotos
from gis.db import open_connection
from gis.keys import create_key
from tests.conftest import ARTIFACTS
from tiles.matrix_sets import CGCS2000_QUAD

WEB = morecantile.tms.get("WebMercatorQuad")
ORIGIN = (618_500.0, 3_754_500.0)  # EPSG:4548, in 宿城区
GSD = 0.1
# (name, offset in px from ORIGIN, size px, dominant colour, flight day)
FLIGHTS = [("west", (0, 0), 640, (200, 60, 50), date(2026, 5, 1)),
           ("east", (320, 80), 640, (40, 70, 210), date(2026, 6, 1))]


def _texture(size: int, colour: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 18, (size // 8, size // 8)).repeat(8, 0).repeat(8, 1)
    return np.stack([np.clip(c + noise, 0, 255) for c in colour]).astype("uint8")


def _write(path, data, offset, dtype="uint8"):
    transform = Affine(GSD, 0, ORIGIN[0] + offset[0] * GSD, 0, -GSD, ORIGIN[1] - offset[1] * GSD)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=dtype, crs="EPSG:4548", transform=transform) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def imagery_db(databases, tmp_path_factory, settings):
    """A migrated database (no city needed) with two overlapping RGB flights and a DSM."""
    info = databases.create("imagery")
    folder = tmp_path_factory.mktemp("imagery")
    ids = {}
    with open_connection(info, autocommit=True) as conn:
        for seed, (name, offset, size, colour, day) in enumerate(FLIGHTS):
            source = _write(folder / f"{name}.tif", _texture(size, colour, seed), offset)
            ids[name] = ingest_orthophoto(conn, settings, source, kind="rgb", name=name, captured_on=day)["id"]
        heights = (10 + np.add.outer(np.arange(256), np.arange(256)) / 20).astype("float32")[None]
        dsm = _write(folder / "dsm.tif", heights, (100, 100), dtype="float32")
        ids["dsm"] = ingest_orthophoto(conn, settings, dsm, kind="dsm", name="dsm", captured_on=date(2026, 5, 1))["id"]
        keys = {"enforcement": create_key(conn, "enforcement", [], "imagery test")[0]}
    yield info, ids, keys, folder
    with open_connection(info) as conn:
        for row in orthophotos.listing(conn):
            for key in ("file_path", "display_path"):
                if row[key]:
                    Path(row[key]).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def api(imagery_db, settings):
    info, *_ = imagery_db
    with TestClient(create_app(settings, conninfo=info)) as client:
        yield client


@pytest.fixture(scope="module")
def live(imagery_db, settings):
    info, *_ = imagery_db
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("imagery_server", command, {"CITYOPS_DATABASE_URL": info, "CITYOPS_STATE_DIR": str(settings.state_dir)},
                 port, log_dir=ARTIFACTS, timeout_s=60) as base:
        yield base


def _centre(conn_info, orthophoto_id, zoom_below_max=0):
    with open_connection(conn_info) as conn:
        row = orthophotos.get(conn, orthophoto_id)
    west, south, east, north = row["bbox"]
    return WEB.tile((west + east) / 2, (south + north) / 2, row["display_maxzoom"] - zoom_below_max), row


def _decode(answer, media):
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == media
    image = Image.open(io.BytesIO(answer.content))
    assert image.size == (256, 256)
    return np.asarray(image.convert("RGBA")).astype(int)


def test_ingest_writes_a_lossless_analysis_cog_and_a_web_aligned_display_cog(imagery_db):
    info, ids, *_ = imagery_db
    with open_connection(info) as conn:
        row = orthophotos.get(conn, ids["west"])
    assert cog_validate(row["file_path"])[0] and cog_validate(row["display_path"])[0]
    with rasterio.open(row["file_path"]) as analysis, rasterio.open(row["display_path"]) as display:
        assert analysis.crs.to_epsg() == 4548 and analysis.profile["compress"] == "deflate"
        assert display.crs.to_epsg() == 3857 and display.profile["compress"] == "jpeg"
        assert display.block_shapes[0] == (256, 256) and display.count == 3
        # aligned to the web grid: the origin is a tile corner at the display's max zoom
        corner = WEB.xy_bounds(WEB.tile(*WEB.lnglat(display.bounds.left + 1, display.bounds.top - 1), row["display_maxzoom"]))
        assert display.bounds.left == pytest.approx(corner.left, abs=1e-6)
        assert display.bounds.top == pytest.approx(corner.top, abs=1e-6)
        mask = display.dataset_mask()
        assert mask[0, 0] == 0 and mask.mean() / 255 > 0.2  # outside the image is masked, the image is not
        assert len(display.overviews(1)) == row["display_maxzoom"] - row["display_minzoom"]


@pytest.mark.parametrize("tms_id", ["WebMercatorQuad", "CGCS2000Quad"])
def test_tiles_decode_in_every_format_from_both_renditions(api, imagery_db, settings, tms_id):
    info, ids, *_ = imagery_db
    web_tile, row = _centre(info, ids["west"], zoom_below_max=1)
    tms = WEB if tms_id == "WebMercatorQuad" else CGCS2000_QUAD
    west, south, east, north = row["bbox"]
    tile = tms.tile((west + east) / 2, (south + north) / 2, web_tile.z)
    url = f"/orthophotos/{ids['west']}/tiles/{tms_id}/{tile.z}/{tile.x}/{tile.y}"

    def decoded_all():
        pictures = {}
        for ext, media in (("png", "image/png"), ("jpg", "image/jpeg"), ("webp", "image/webp")):
            rgba = _decode(api.get(f"{url}.{ext}"), media)
            opaque = (rgba[..., 3] > 0) & (rgba[..., :3].sum(axis=-1) > 40)  # JPEG: black outside the image
            assert opaque.mean() > 0.2
            red, blue = rgba[opaque][:, 0].mean(), rgba[opaque][:, 2].mean()
            assert red > blue + 80  # the west flight is red-dominant, whatever the encoding
            pictures[ext] = rgba
        return pictures

    from_display = decoded_all()
    display_etag = api.get(f"{url}.png").headers["etag"]
    with open_connection(info, autocommit=True) as conn:  # as an orthophoto catalogued before renditions existed
        with conn.transaction():
            old = orthophotos.set_display(conn, ids["west"], dict.fromkeys(
                ("display_path", "display_bytes", "display_minzoom", "display_maxzoom")))
        _wait_until(lambda: api.get(f"{url}.png").headers["etag"] != display_etag)
        from_analysis = decoded_all()
        analysis_etag = api.get(f"{url}.png").headers["etag"]
        assert np.abs(from_analysis["png"][..., :3] - from_display["png"][..., :3]).mean() < 12
        make_display_rendition(conn, settings, ids["west"])  # what `cityops drone renditions` does
    Path(old["display_path"]).unlink(missing_ok=True)
    _wait_until(lambda: api.get(f"{url}.png").headers["etag"] != analysis_etag)


def _wait_until(condition, timeout_s=1.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the change did not reach the tile cache in time"
        time.sleep(0.02)


def test_cache_answers_304_and_drops_a_replaced_orthophotos_tiles_within_a_second(api, imagery_db, settings):
    info, ids, _, folder = imagery_db
    tile, _ = _centre(info, ids["dsm"], zoom_below_max=1)
    url = f"/orthophotos/{ids['dsm']}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    first = api.get(url)
    assert first.status_code == 200 and first.headers["etag"]
    assert api.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    warm_start = time.perf_counter()
    for _ in range(20):
        api.get(url)
    warm = (time.perf_counter() - warm_start) / 20
    # another program replaces the DSM (steeper heights): the change feed must reach the cache
    steeper = (10 + np.add.outer(np.arange(256), np.arange(256)) * 2.0).astype("float32")[None]
    source = _write(folder / "dsm-v2.tif", steeper, (100, 100), dtype="float32")
    with open_connection(info, autocommit=True) as conn:
        replace_orthophoto(conn, settings, ids["dsm"], source)
    replaced_at = time.monotonic()
    while True:
        answer = api.get(url, headers={"If-None-Match": first.headers["etag"]})
        if answer.status_code == 200:
            break
        assert time.monotonic() - replaced_at < 1.0, "the replaced DSM's cached tile was still served after 1 s"
        time.sleep(0.02)
    assert answer.headers["etag"] != first.headers["etag"]
    assert warm < 0.05


def test_a_cached_tile_is_answered_as_the_route_answers_it(api, imagery_db):
    """Cache hits are answered before routing (api.routers.orthophotos.CachedRasterTiles): same bytes,
    validators and security headers as the route's first answer, in every format and path form."""
    info, ids, *_ = imagery_db
    tile, _ = _centre(info, ids["east"], zoom_below_max=2)
    urls = [f"/orthophotos/{ids['east']}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.webp",
            f"/collections/orthophoto-{ids['east']}/map/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}.jpeg",
            f"/collections/imagery/map/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}.png"]
    compared = ("content-type", "etag", "cache-control", "vary", "x-content-type-options", "content-security-policy")
    for url in urls:
        first, again = api.get(url), api.get(url)
        assert first.status_code == again.status_code == 200, url
        assert again.content == first.content
        assert {h: again.headers.get(h) for h in compared} == {h: first.headers.get(h) for h in compared}
        assert all(again.headers.get(h) for h in compared), again.headers
        assert api.get(url, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    # a query string, a bad number or format goes to the routes, which say why
    assert api.get(urls[2] + "?datetime=2026-05-15").status_code == 200
    assert api.get(urls[2] + "?datetime=May").status_code == 400
    assert api.get(urls[0].replace(".webp", ".gif")).status_code == 400


def test_the_mosaic_stacks_the_newest_flight_on_top_and_shows_a_past_day(api, imagery_db):
    info, ids, *_ = imagery_db
    with open_connection(info) as conn:
        west, east = orthophotos.get(conn, ids["west"]), orthophotos.get(conn, ids["east"])
    # a point in both flights, and one in the west flight only
    both = ((east["bbox"][0] + west["bbox"][2]) / 2, (max(west["bbox"][1], east["bbox"][1]) + min(west["bbox"][3], east["bbox"][3])) / 2)
    west_only = (west["bbox"][0] + 0.00005, (west["bbox"][1] + west["bbox"][3]) / 2 + 0.00005)
    z = west["display_maxzoom"] - 1

    def colour(point, day=None, ext="png"):
        tile = WEB.tile(*point, z)
        query = f"?datetime={day}" if day else ""
        rgba = _decode(api.get(f"/collections/imagery/map/tiles/WebMercatorQuad/{z}/{tile.y}/{tile.x}.{ext}{query}"),
                       {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[ext])
        # the pixel under the point
        left, bottom, right, top = WEB.xy_bounds(tile)
        x, y = WEB.xy(*point)
        return rgba[int((top - y) / (top - bottom) * 255), int((x - left) / (right - left) * 255)]

    for ext in ("png", "jpg", "webp"):
        assert colour(both, ext=ext)[2] > colour(both, ext=ext)[0] + 80  # the newer (blue) flight on top
    assert colour(west_only)[0] > colour(west_only)[2] + 80
    assert colour(both, day="2026-05-15")[0] > colour(both, day="2026-05-15")[2] + 80  # before the blue flight
    early = api.get(f"/collections/imagery/map/tiles/WebMercatorQuad/{z}/0/0.png?datetime=2026-01-01")
    assert early.status_code == 404 and "first flight is of 2026-05-01" in early.json()["description"]
    far = WEB.tile(west["bbox"][0] - 0.01, west["bbox"][1] - 0.01, z)
    for ext in ("png", "webp"):  # no imagery: a transparent tile (GDAL 3.6's cache logs an ERROR per 204)
        assert _decode(api.get(f"/collections/imagery/map/tiles/WebMercatorQuad/{z}/{far.y}/{far.x}.{ext}"),
                       f"image/{ext}")[..., 3].max() == 0
    assert api.get(f"/collections/imagery/map/tiles/WebMercatorQuad/{z}/{far.y}/{far.x}.jpg").status_code == 204


def test_bad_requests_say_why(api, imagery_db):
    _, ids, *_ = imagery_db
    photo = ids["west"]
    cases = [
        ("/orthophotos/999999/tiles/WebMercatorQuad/18/1/1.png", 404, "no orthophoto with id 999999"),
        (f"/orthophotos/{photo}/tiles/WebMercatorQuad/18/1/1.png", 404, "outside orthophoto"),
        (f"/orthophotos/{photo}/tiles/WebMercatorQuad/3/9/9.png", 404, "outside WebMercatorQuad level 3"),
        (f"/orthophotos/{photo}/tiles/WebMercatorQuad/30/1/1.png", 404, "tileMatrix 30 is not in"),
        (f"/orthophotos/{photo}/tiles/WebMercatorQuad/18/1/1.gif", 400, "unsupported tile format 'gif'"),
        (f"/orthophotos/{photo}/tiles/WorldMercatorWGS84Quad/18/1/1.png", 404, "raster tiles are served in"),
        (f"/orthophotos/{photo}/CGCS2000Quad/tilejson.json", 404, "WebMercatorQuad only"),
        ("/collections/imagery/map/tiles/WebMercatorQuad/18/1/x1.png", 400, "tileCol must be a whole number"),
        ("/collections/nowhere/map/tiles/WebMercatorQuad", 404, "no raster collection 'nowhere'"),
        ("/collections/imagery/map/tiles?datetime=1999-01-01", 404, "no RGB orthophoto was flown on or before"),
        ("/orthophotos/1/tiles/WebMercatorQuad/18/1/1.png?url=/etc/passwd", 404, None),
    ]
    for url, status, reason in cases:
        answer = api.get(url)
        assert answer.status_code == status, (url, answer.text)
        if reason:
            assert reason in answer.json()["description"], (url, answer.text)
    paths = api.get("/api").json()["paths"]
    raster_paths = [p for p in paths if "orthophoto" in p or "/map/" in p]
    assert raster_paths and not any(param["name"] in ("url", "path", "file")
                                    for p in raster_paths for op in paths[p].values()
                                    for param in op.get("parameters", []))


def test_ogc_documents_link_tiles_as_clients_need(api, imagery_db):
    _, ids, *_ = imagery_db
    listed = {c["id"] for c in api.get("/collections").json()["collections"]}
    assert {"imagery", f"orthophoto-{ids['west']}", f"orthophoto-{ids['dsm']}"} <= listed
    collection = api.get("/collections/imagery").json()
    assert len(collection["extent"]["spatial"]["bbox"]) == 1
    tilesets = api.get("/collections/imagery/map/tiles").json()["tilesets"]
    assert [t["tileMatrixSetURI"].rsplit("/", 1)[-1] for t in tilesets] == ["WebMercatorQuad", "WorldCRS84Quad",
                                                                             "CGCS2000Quad"]
    tileset = api.get("/collections/imagery/map/tiles/WebMercatorQuad").json()
    rels = {link["rel"] for link in tileset["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme" in rels
    items = [link for link in tileset["links"] if link["rel"] == "item"]
    assert {link["type"] for link in items} == {"image/png", "image/jpeg", "image/webp"}
    assert all("{tileMatrix}/{tileRow}/{tileCol}." in link["href"] and "%7B" not in link["href"] for link in items)
    assert tileset["dataType"] == "map" and tileset["tileMatrixSetLimits"]
    tilejson = api.get(f"/orthophotos/{ids['west']}/WebMercatorQuad/tilejson.json").json()
    assert tilejson["tiles"][0].endswith("/tiles/WebMercatorQuad/{z}/{x}/{y}.png") and "?" not in tilejson["tiles"][0]


def _unordered_links(document: dict) -> dict:
    """The document with its links as a set: each extension adds its own links, in the order composed."""
    return {**document, "links": sorted(json.dumps(link, sort_keys=True) for link in document["links"])}


def test_collection_routes_carry_no_order(api, imagery_db, settings):
    """`/collections/{collectionId}` is one route resolving vector layers and raster collections alike:
    the app composed in the reverse order answers every kind as the usual one does."""
    info, ids, *_ = imagery_db
    wanted = ["imagery", f"orthophoto-{ids['west']}", f"orthophoto-{ids['dsm']}", "districts", "manhole_covers"]
    with TestClient(create_app(settings, conninfo=info, composed=list(reversed(extensions())))) as reversed_api:
        for collection_id in wanted:
            usual, other = api.get(f"/collections/{collection_id}"), reversed_api.get(f"/collections/{collection_id}")
            assert usual.status_code == other.status_code == 200, (collection_id, usual.text, other.text)
            assert _unordered_links(usual.json()) == _unordered_links(other.json()) and usual.json()["id"] == collection_id
        for missing in ("nosuch", "orthophoto-987654321", "orthophoto-x"):
            usual, other = api.get(f"/collections/{missing}"), reversed_api.get(f"/collections/{missing}")
            assert usual.status_code == other.status_code == 404 and usual.json() == other.json(), missing
    assert "queryables" in {link["rel"].rsplit("/", 1)[-1] for link in api.get("/collections/districts").json()["links"]}


def test_gdal_reads_an_orthophoto_and_the_mosaic_over_http(live, imagery_db):
    info, ids, *_ = imagery_db
    with open_connection(info) as conn:
        row = orthophotos.get(conn, ids["west"])
    cog_url = f"{live}/orthophotos/{ids['west']}/cog.tif"
    env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif"}
    with rasterio.Env(**env), rasterio.open(f"/vsicurl/{cog_url}") as remote, rasterio.open(row["file_path"]) as local:
        assert remote.crs == local.crs and remote.transform == local.transform
        assert remote.overviews(1) == local.overviews(1)
        window = rasterio.windows.Window(100, 200, 64, 64)
        assert np.array_equal(remote.read(window=window), local.read(window=window))
    # GDAL's OGCAPI raster reader, from pyogrio's newer GDAL (rasterio's wheel lacks the driver)
    mosaic = newer_gdal_info(f"OGCAPI:{live}/collections/imagery", "-stats")
    assert "CRS84" in mosaic["coordinateSystem"]["wkt"] and len(mosaic["bands"]) == 4
    (west, north), (east, south) = mosaic["cornerCoordinates"]["upperLeft"], mosaic["cornerCoordinates"]["lowerRight"]
    assert west == pytest.approx(row["bbox"][0], abs=1e-5) and north == pytest.approx(row["bbox"][3], abs=1e-5)
    assert east > row["bbox"][2] and south < row["bbox"][3]  # the east flight widens it
    red, _, blue, alpha = (band["mean"] for band in mosaic["bands"])
    assert alpha > 100 and red > 50 and blue > 50  # both flights are in it
    dsm = newer_gdal_info(f"OGCAPI:{live}/collections/orthophoto-{ids['dsm']}")
    assert dsm["size"][0] > 0
    if shutil.which("gdalinfo"):  # Debian's GDAL 3.6, as a department's desktop has it
        result = subprocess.run(["gdalinfo", f"/vsicurl/{cog_url}"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"Size is {row['width']}, {row['height']}" in result.stdout and "Overviews:" in result.stdout


DEBIAN_GDALINFO = Path("/usr/bin/gdalinfo")


@pytest.mark.skipif(not DEBIAN_GDALINFO.exists(), reason="Debian's gdal-bin (GDAL 3.6) is not installed")
def test_debian_gdal_36_reads_the_mosaic_and_an_orthophoto_through_ogcapi(live, imagery_db):
    """GDAL 3.6 reads TMS 1.0 tile matrix sets only and mis-sizes a level whose limits are narrower than
    its matrix: the raster tilesets serve what it needs (tiles.raster_metadata)."""
    info, ids, *_ = imagery_db
    with open_connection(info) as conn:
        west_row = orthophotos.get(conn, ids["west"])
    version = subprocess.run([DEBIAN_GDALINFO, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("GDAL 3."), version

    def gdalinfo(target: str, *options: str) -> dict:
        result = subprocess.run([DEBIAN_GDALINFO, "-json", "-oo", "CACHE=NO", *options, f"OGCAPI:{live}{target}"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and "ERROR" not in result.stderr, result.stderr
        return json.loads(result.stdout)

    mosaic = gdalinfo("/collections/imagery", "-stats")
    (x_res, y_res) = mosaic["geoTransform"][1], mosaic["geoTransform"][5]
    assert y_res == pytest.approx(-x_res, rel=1e-6)  # square pixels: GDAL 3.6 made them 20000:1 before
    assert 500 < mosaic["size"][0] < 5_000 and 500 < mosaic["size"][1] < 5_000  # ~1000 px of 0.1 m imagery
    (west, north), (east, south) = mosaic["cornerCoordinates"]["upperLeft"], mosaic["cornerCoordinates"]["lowerRight"]
    assert west == pytest.approx(west_row["bbox"][0], abs=1e-5) and north == pytest.approx(west_row["bbox"][3], abs=1e-5)
    assert east > west_row["bbox"][2] and south < west_row["bbox"][3]
    red, _, blue, alpha = (band["mean"] for band in mosaic["bands"])
    assert alpha > 100 and red > 50 and blue > 50  # the red west and the blue east flight are both in it
    single = gdalinfo(f"/collections/orthophoto-{ids['west']}", "-stats")
    red, green, blue, alpha = (band["mean"] for band in single["bands"])
    assert alpha > 100 and red > 2 * blue  # the west flight alone: red
    dsm = gdalinfo(f"/collections/orthophoto-{ids['dsm']}")
    assert dsm["size"][0] > 100 and dsm["geoTransform"][5] == pytest.approx(-dsm["geoTransform"][1], rel=1e-6)


@pytest.fixture(scope="module")
def gapped_live(databases, tmp_path_factory, settings):
    """A server whose mosaic has a wide gap: two small flights 300 m apart on the diagonal."""
    info = databases.create("imagery_gaps")
    folder = tmp_path_factory.mktemp("gaps")
    with open_connection(info, autocommit=True) as conn:
        for seed, (offset, colour) in enumerate([((0, 0), (200, 60, 50)), ((3000, 3000), (40, 70, 210))]):
            source = _write(folder / f"gap{seed}.tif", _texture(256, colour, seed), offset)
            ingest_orthophoto(conn, settings, source, kind="rgb", name=f"gap{seed}", captured_on=date(2026, 5, 1 + seed))
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("imagery_gaps_server", command, {"CITYOPS_DATABASE_URL": info, "CITYOPS_STATE_DIR": str(settings.state_dir)},
                 port, log_dir=ARTIFACTS, timeout_s=60) as base:
        yield base
    with open_connection(info) as conn:
        for row in orthophotos.listing(conn):
            for key in ("file_path", "display_path"):
                if row[key]:
                    Path(row[key]).unlink(missing_ok=True)


@pytest.mark.skipif(not DEBIAN_GDALINFO.exists(), reason="Debian's gdal-bin (GDAL 3.6) is not installed")
def test_debian_gdal_36_reads_a_mosaic_with_gaps_without_cache_options(gapped_live, tmp_path):
    # the plain command, with GDAL's disk cache on: each empty (204) tile was an "ERROR 4 … No such
    # file or directory / Unable to open downloaded block" before empty PNG tiles came transparent
    env = {**os.environ, "GDAL_DEFAULT_WMS_CACHE_PATH": str(tmp_path / "gdalwmscache")}
    info = subprocess.run([DEBIAN_GDALINFO, "-json", "-stats", f"OGCAPI:{gapped_live}/collections/imagery"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert info.returncode == 0 and "ERROR" not in info.stderr, info.stderr[:500]
    red, _, blue, alpha = (band["mean"] for band in json.loads(info.stdout)["bands"])
    assert 0 < alpha < 60 and red > 0 and blue > 0  # two small flights in a mostly empty square
    copied = subprocess.run([DEBIAN_GDALINFO.with_name("gdal_translate"), f"OGCAPI:{gapped_live}/collections/imagery",
                             str(tmp_path / "mosaic.tif")], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert copied.returncode == 0 and "ERROR" not in copied.stderr, copied.stderr[:500]
    assert (tmp_path / "gdalwmscache").exists()  # the cache was on


def newer_gdal_info(target: str, *options: str) -> dict:
    """`gdalinfo -json` by the GDAL that pyogrio's wheel carries (3.9+), called through its C API."""
    library = next((Path(pyogrio.__file__).parent.parent / "pyogrio.libs").glob("libgdal-*.so*"))
    gdal = ctypes.CDLL(str(library))
    gdal.GDALAllRegister()
    gdal.GDALOpenEx.restype = gdal.GDALInfoOptionsNew.restype = gdal.GDALInfo.restype = ctypes.c_void_p
    gdal.GDALOpenEx.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    gdal.GDALInfoOptionsNew.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
    gdal.GDALInfo.argtypes = gdal.GDALClose.argtypes = gdal.VSIFree.argtypes = [ctypes.c_void_p]
    gdal.GDALInfo.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    def strings(*items: str):
        return (ctypes.c_char_p * (len(items) + 1))(*(item.encode() for item in items), None)

    dataset = gdal.GDALOpenEx(target.encode(), 0x02, None, strings("CACHE=NO"), None)  # GDAL_OF_RASTER
    assert dataset, f"GDAL could not open {target}"
    try:
        text = gdal.GDALInfo(dataset, gdal.GDALInfoOptionsNew(strings("-json", *options), None))
        return json.loads(ctypes.string_at(text).decode())
    finally:
        gdal.GDALClose(dataset)


def test_cli_exports_the_imagery_to_pmtiles_and_mbtiles(imagery_db, tmp_path):
    info, ids, *_ = imagery_db
    with open_connection(info) as conn:
        maxzoom = orthophotos.get(conn, ids["west"])["display_maxzoom"]
    env = {**os.environ, "CITYOPS_DATABASE_URL": info}
    zooms = f"{maxzoom - 2}-{maxzoom - 1}"
    for name, image_format in (("imagery.pmtiles", "webp"), ("imagery.mbtiles", "png")):
        done = subprocess.run([sys.executable, "-m", "api.cli", "tiles", "export", "--imagery", "-o", str(tmp_path / name),
                               "--zoom", zooms, "--image-format", image_format], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr
    with open(tmp_path / "imagery.pmtiles", "rb") as f:
        reader = PMTilesReader(MmapSource(f))
        header = reader.header()
        assert header["tile_type"] == TileType.WEBP and header["max_zoom"] == maxzoom - 1
        tile = WEB.tile(*_centre_lnglat(info, ids["west"]), maxzoom - 1)
        picture = Image.open(io.BytesIO(reader.get(tile.z, tile.x, tile.y)))
        assert picture.size == (256, 256) and picture.format == "WEBP"
    with sqlite3.connect(tmp_path / "imagery.mbtiles") as db:
        assert dict(db.execute("SELECT name, value FROM metadata"))["format"] == "png"
        count, = db.execute("SELECT count(*) FROM tiles").fetchone()
        data, = db.execute("SELECT tile_data FROM tiles LIMIT 1").fetchone()
    assert count >= 2 and Image.open(io.BytesIO(data)).format == "PNG"
    early = subprocess.run([sys.executable, "-m", "api.cli", "tiles", "export", "--imagery", "-o", str(tmp_path / "x.pmtiles"),
                            "--datetime", "2020-01-01"], capture_output=True, text=True, env=env, timeout=120)
    assert early.returncode == 1 and "first flight is of 2026-05-01" in early.stderr


def _centre_lnglat(info, orthophoto_id):
    with open_connection(info) as conn:
        west, south, east, north = orthophotos.get(conn, orthophoto_id)["bbox"]
    return (west + east) / 2, (south + north) / 2
