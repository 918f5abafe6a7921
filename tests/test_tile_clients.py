"""Real clients read what the tile API serves: GDAL's MVT driver over HTTP, the MapLibre style validator."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
import mapbox_vector_tile
import morecantile
import pyogrio
import pytest
import shapely
from pmtiles.reader import MmapSource, Reader

from gis.db import open_connection

ROOT = Path(__file__).resolve().parent.parent
STYLE_VALIDATOR = ROOT / "web_map" / "node_modules" / ".bin" / "gl-style-validate"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
UNIT_DEG = 180 / 2**15 / 4096  # one MVT unit of a WorldCRS84Quad z15 tile (2 × 1 tiles at z0), in degrees


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="gdal-bin is not installed")
def test_gdal_reads_a_tile_over_http(live_server):
    tile = WEB_MERCATOR.tile(118.28, 33.96, 15)
    url = f"{live_server}/collections/manhole_covers/tiles/WebMercatorQuad/15/{tile.y}/{tile.x}"
    expected = len(mapbox_vector_tile.decode(httpx.get(url).content)["manhole_covers"]["features"])
    # list_dir=no: the tile's URL is not a directory of a tileset; X/Y/Z place it (paths are z/row/col)
    source = f"MVT:/vsicurl?list_dir=no&url={quote(url, safe='')}"
    result = subprocess.run(["ogrinfo", "-ro", "-so", "-al", "-oo", "Z=15", "-oo", f"X={tile.x}", "-oo", f"Y={tile.y}", source],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"Feature Count: {expected}" in result.stdout
    assert "sensor_state: String" in result.stdout
    xmin, ymin, xmax, ymax = map(float, re.search(r"Extent: \(([-\d.]+), ([-\d.]+)\) - \(([-\d.]+), ([-\d.]+)\)", result.stdout).groups())
    bounds = WEB_MERCATOR.xy_bounds(tile)
    assert bounds.left <= xmin <= xmax <= bounds.right and bounds.bottom <= ymin <= ymax <= bounds.top


def test_gdal_ogcapi_driver_reads_a_collection_through_its_tilesets(live_server, city_db):
    # pyogrio's own GDAL (3.9+; Debian 12's GDAL 3.6 has its OGCAPI vector-tile reading compiled
    # out, GDAL #7993). It follows the collection's tilesets-vector link, picks WorldCRS84Quad and
    # reads each zoom level as a layer of its tiles.
    source = f"OGCAPI:{live_server}/collections/manhole_covers"
    assert "Zoom level 15" in [name for name, _ in pyogrio.list_layers(source)]
    box = (118.275, 33.955, 118.285, 33.965)
    covers = pyogrio.read_dataframe(source, layer="Zoom level 15", bbox=box)
    with open_connection(city_db) as conn:
        expected = conn.execute("SELECT count(*) AS n FROM city.manhole_cover_v WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4490)",
                                box).fetchone()["n"]
        # GDAL's bbox filter sees tile-rounded coordinates: leave a few units out at the box's edge
        inner = (box[0] + 4 * UNIT_DEG, box[1] + 4 * UNIT_DEG, box[2] - 4 * UNIT_DEG, box[3] - 4 * UNIT_DEG)
        truth = conn.execute("SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM city.manhole_cover_v "
                             "WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4490)", inner).fetchall()
    assert covers.crs.to_string() == "OGC:CRS84"
    assert set(covers.geometry.geom_type) == {"Point"}
    # Points in a tile's buffer come twice (once from each tile), so count by place: every cover
    # well inside the box is read, within a z15 tile unit (≈0.15 m) of where it is.
    read = shapely.STRtree(covers.geometry.values)
    assert len(truth) > 20
    missed = [(r["x"], r["y"]) for r in truth if not len(read.query(shapely.Point(r["x"], r["y"]), predicate="dwithin", distance=UNIT_DEG))]
    assert missed == []
    assert expected >= len(truth)


@pytest.mark.skipif(not STYLE_VALIDATOR.exists(), reason="web_map npm packages are not installed (scripts/install.sh)")
def test_style_passes_the_maplibre_validator(client, tmp_path):
    style = client.get("/styles/default/style.json").json()
    catalogue = client.app.state.catalogue
    assert {layer["source-layer"] for layer in style["layers"] if "source-layer" in layer} == {layer.id for layer in catalogue.layers}
    covers = catalogue.get("manhole_covers")
    counts = [layer for layer in style["layers"] if layer["id"].startswith("manhole_covers-counts")]
    assert len(counts) > 1 and all(layer["maxzoom"] == covers.minzoom for layer in counts)
    # QGIS 3.22 converts zoom interpolations and filters only: no sqrt, no step or interpolation on a property
    assert '"sqrt"' not in json.dumps(style) and '"step"' not in json.dumps([l["paint"] for l in counts])
    # QGIS 3.22 cannot follow a TileJSON url: the source gives the tile template itself
    assert "url" not in style["sources"]["cityops"] and style["sources"]["cityops"]["tiles"][0].endswith("/{z}/{y}/{x}")
    path = tmp_path / "style.json"
    path.write_text(json.dumps(style, ensure_ascii=False))
    result = subprocess.run([str(STYLE_VALIDATOR), str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _cityops(args: list[str], database: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CITYOPS_DATABASE_URL": database}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "cityops"), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="gdal-bin is not installed")
def test_export_mbtiles_and_pmtiles(city_db, tmp_path):
    mbtiles = tmp_path / "covers.mbtiles"
    result = _cityops(["tiles", "export", "-o", str(mbtiles), "--zoom", "0-12", "--layer", "manhole_covers"], city_db)
    assert result.returncode == 0, result.stderr
    info = subprocess.run(["ogrinfo", "-ro", "-so", "-al", "-oo", "ZOOM_LEVEL=8", str(mbtiles)], capture_output=True, text=True, timeout=60)
    assert "Layer name: manhole_covers" in info.stdout and "count: Real" in info.stdout, info.stdout + info.stderr
    pmtiles = tmp_path / "city.pmtiles"
    result = _cityops(["tiles", "export", "-o", str(pmtiles), "--zoom", "0-10"], city_db)
    assert result.returncode == 0, result.stderr
    with open(pmtiles, "rb") as f:
        reader = Reader(MmapSource(f))
        assert reader.header()["max_zoom"] == 10
        assert {layer["id"] for layer in reader.metadata()["vector_layers"]} >= {"districts", "manhole_covers"}
        tile = WEB_MERCATOR.tile(118.28, 33.96, 10)
        assert "districts" in mapbox_vector_tile.decode(gzip.decompress(reader.get(10, tile.x, tile.y)))


def test_seed_warms_the_server(live_server, city_db):
    """Seeding asks the server for every tile of the city at the zooms given, each answered: the
    server's own access log holds exactly the expected tiles."""
    log = ROOT / "test-artifacts" / "live_server.log"
    start = log.stat().st_size
    result = _cityops(["tiles", "seed", "--zoom", "0-9", "--layer", "districts", "--server", live_server], city_db)
    assert result.returncode == 0, result.stderr
    bounds = httpx.get(f"{live_server}/tiles/WebMercatorQuad/tilejson.json").json()["bounds"]
    wanted = {(t.z, t.y, t.x) for t in WEB_MERCATOR.tiles(*bounds, range(0, 10))}
    assert f"seeded {len(wanted):,} tiles" in result.stderr.replace("\n", " ")
    with open(log, "rb") as f:
        f.seek(start)
        served = re.findall(r'"GET /collections/districts/tiles/WebMercatorQuad/(\d+)/(\d+)/(\d+) HTTP/1.1" (\d+)', f.read().decode())
    assert {(int(z), int(y), int(x)) for z, y, x, _ in served} == wanted
    assert {status for *_, status in served} <= {"200", "204"}
    bad = _cityops(["tiles", "seed", "--zoom", "9-x"], city_db)
    assert bad.returncode == 1 and "--zoom" in bad.stderr
