"""An orthophoto as other departments' web maps read it: OpenLayers' OGCMapTile source on the
orthophoto's OGC API map tileset, in Debian Chromium, against a live server (the imagery
database and server of tests/test_orthophoto_tiles.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gis import orthophotos
from gis.db import open_connection
from tests.conftest import ARTIFACTS
from tests.test_orthophoto_tiles import FLIGHTS, imagery_db, live  # noqa: F401  (fixtures)

SCRIPT = Path(__file__).resolve().parent / "browser" / "openlayers_imagery.mjs"
OPENLAYERS = Path(__file__).resolve().parent.parent / "web_map" / "node_modules" / "ol"


@pytest.mark.slow
@pytest.mark.skipif(not OPENLAYERS.exists() or not Path("/usr/bin/chromium").exists(),
                    reason="web_map npm packages (ol) or Debian chromium are not installed")
def test_openlayers_ogc_map_tile_draws_an_orthophoto(live, imagery_db):  # noqa: F811
    info, ids, *_ = imagery_db
    with open_connection(info) as conn:
        west, south, east, north = orthophotos.get(conn, ids["west"])["bbox"]
    inner = f"{west + (east - west) / 4},{south + (north - south) / 4},{east - (east - west) / 2},{north - (north - south) / 2}"
    ARTIFACTS.mkdir(exist_ok=True)
    run = subprocess.run(["node", str(SCRIPT), f"{live}/collections/orthophoto-{ids['west']}/map/tiles/WebMercatorQuad",
                          inner, str(ARTIFACTS / "openlayers_orthophoto.png")], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["consoleErrors"] == [] and report["state"] == "ready", report
    # the west flight is painted red-dominant: its colour, not an empty or an error tile, is at the centre
    red, green, blue, alpha = report["centre"]
    expected = next(colour for name, _, _, colour, _ in FLIGHTS if name == "west")
    assert alpha == 255 and red > green + 60 and red > blue + 60, (report, expected)
