"""The README's commands as a user types them: `./run` (and its fast second start),
`cityops import` (append, upsert with --key, replace, --report, BD-09), `cityops export --crs`,
`cityops query`. Results are read back from the database or the written file."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyogrio
import pytest
from pyproj import Transformer

from bench.servers import free_port
from gis.db import open_connection
from gis.source_crs import wgs84_to_gcj02

ROOT = Path(__file__).resolve().parent.parent
FIRST_START_LIMIT_S = 600   # installs nothing here, but loads the demo city into an empty database
SECOND_START_LIMIT_S = 30   # "a second ./run only checks what is installed and starts in seconds"


def cityops(database: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "api.cli", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "CITYOPS_DATABASE_URL": database})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def own_city(databases) -> str:
    """A demo city of this module's own: replace and upsert change whole layers."""
    return databases.demo_city("cli_transfer")


def _bins(path: Path, rows: list[tuple[float, float, str, str | None]]) -> None:
    features = [{"type": "Feature", "properties": {"objname": name, **({"objcode": code} if code else {})},
                 "geometry": {"type": "Point", "coordinates": [lon, lat]}} for lon, lat, name, code in rows]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")


def _furniture(conn) -> dict[str, str]:
    return {r["objcode"]: r["objname"] for r in conn.execute(
        "SELECT objcode, objname FROM city.component WHERE class_code = '0305' AND objname LIKE 'cli %'").fetchall()}


def test_import_append_upsert_replace_and_report(own_city, tmp_path):
    first = tmp_path / "bins.geojson"
    _bins(first, [(118.2101 + k * 1e-4, 33.9101, f"cli bin {k}", None) for k in range(4)])
    report_file = tmp_path / "report.json"
    out = cityops(own_city, "import", first, "--layer", "city_furniture", "--class", "0305", "--report", report_file)
    report = json.loads(report_file.read_text())
    assert report["inserted"] == {"city_furniture": 4} and report["read"] == 4 and report["rejected"] == 0
    assert "city_furniture +4" in out.stdout + out.stderr
    with open_connection(own_city) as conn:
        made = _furniture(conn)
    assert sorted(made.values()) == [f"cli bin {k}" for k in range(4)]
    # upsert by objcode: two of them renamed, one new
    codes = sorted(made)
    second = tmp_path / "bins2.geojson"
    _bins(second, [(118.2101, 33.9101, "cli renamed 0", codes[0]), (118.2102, 33.9101, "cli renamed 1", codes[1]),
                   (118.2201, 33.9201, "cli new", None)])
    cityops(own_city, "import", second, "--layer", "city_furniture", "--class", "0305", "--mode", "upsert", "--key", "objcode",
            "--report", report_file)
    report = json.loads(report_file.read_text())
    assert (report["inserted"], report["updated"]) == ({"city_furniture": 1}, {"city_furniture": 2})
    with open_connection(own_city) as conn:
        after = _furniture(conn)
    assert after[codes[0]] == "cli renamed 0" and after[codes[1]] == "cli renamed 1"
    assert after[codes[2]] == made[codes[2]] and len(after) == 5
    # upsert without --key is refused with a message
    refused = subprocess.run([sys.executable, "-m", "api.cli", "import", str(second), "--layer", "city_furniture", "--mode", "upsert"],
                             capture_output=True, text=True, env={**os.environ, "CITYOPS_DATABASE_URL": own_city}, timeout=120)
    assert refused.returncode != 0 and "--key" in refused.stderr
    # replace: the layer is the file and nothing else
    cityops(own_city, "import", first, "--layer", "city_furniture", "--class", "0305", "--mode", "replace", "--report", report_file)
    report = json.loads(report_file.read_text())
    with open_connection(own_city) as conn:
        left = conn.execute("SELECT count(*) AS n FROM city.component WHERE class_code IN "
                            "('0121','0122','0123','0126','0138','0203','0301','0305','0501','0690')").fetchone()["n"]
    assert report["deleted"]["city_furniture"] > 1000 and report["inserted"] == {"city_furniture": 4} and left == 4


def _wgs84_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """Baidu's BD-09 from GCJ-02, the published formula (written here, not taken from gis/)."""
    x, y = wgs84_to_gcj02(lon, lat)
    x_pi = math.pi * 3000.0 / 180.0
    z = math.sqrt(x * x + y * y) + 0.00002 * math.sin(y * x_pi)
    theta = math.atan2(y, x) + 0.000003 * math.cos(x * x_pi)
    return z * math.cos(theta) + 0.0065, z * math.sin(theta) + 0.006


def test_bd09_import_lands_on_the_originals(own_city, tmp_path):
    with open_connection(own_city) as conn:
        lights = conn.execute("SELECT objcode, ST_X(geom) AS x, ST_Y(geom) AS y FROM city.streetlight_v ORDER BY objcode LIMIT 50").fetchall()
    path = tmp_path / "baidu.csv"
    path.write_text("lon,lat,objname\n" + "".join("{:.8f},{:.8f},bd {}\n".format(*_wgs84_to_bd09(r["x"], r["y"]), r["objcode"])
                                                  for r in lights), encoding="utf-8")
    flagged = cityops(own_city, "import", path, "--layer", "streetlights", "--dry-run")
    assert "BD-09" in flagged.stdout + flagged.stderr
    cityops(own_city, "import", path, "--layer", "streetlights", "--crs", "bd09")
    with open_connection(own_city) as conn:
        moved = conn.execute("SELECT count(*) AS n, max(ST_Distance(a.geom::geography, b.geom::geography)) AS m "
                             "FROM city.streetlight_v a JOIN city.streetlight_v b ON a.objname = 'bd ' || b.objcode").fetchone()
    assert moved["n"] == 50 and moved["m"] < 1.0


def test_export_in_another_crs(own_city, tmp_path):
    out = tmp_path / "covers.gpkg"
    bbox = "118.27,33.95,118.29,33.97"
    cityops(own_city, "export", "--layer", "manhole_covers", "--format", "gpkg", "--bbox", bbox, "--crs", "EPSG:4548", "-o", out)
    frame = pyogrio.read_dataframe(out)
    assert frame.crs.to_epsg() == 4548
    with open_connection(own_city) as conn:
        truth = {r["objcode"]: (r["x"], r["y"]) for r in conn.execute(
            "SELECT objcode, ST_X(geom) AS x, ST_Y(geom) AS y FROM city.manhole_cover_v "
            "WHERE geom && ST_MakeEnvelope(118.27, 33.95, 118.29, 33.97, 4490)").fetchall()}
    assert len(frame) == len(truth) > 10
    to_gk = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True)  # PROJ here, PostGIS there
    for objcode, point in zip(frame["objcode"], frame.geometry):
        x, y = to_gk.transform(*truth[objcode])
        assert abs(point.x - x) < 0.01 and abs(point.y - y) < 0.01
    assert 500_000 < frame.geometry.x.min() < 700_000  # Gauss-Krüger metres east of CM 117°E (500 km false easting)


def test_query_locate_and_within(own_city):
    with open_connection(own_city) as conn:
        grid = conn.execute("SELECT bgcode, ST_X(ST_PointOnSurface(geom)) AS x, ST_Y(ST_PointOnSurface(geom)) AS y, responsible_unit_id "
                            "FROM city.unit_grid ORDER BY geom <-> ST_SetSRID(ST_Point(118.28, 33.96), 4490) LIMIT 1").fetchone()
        near = {r["objcode"] for r in conn.execute("SELECT objcode FROM city.manhole_cover_v WHERE ST_DWithin(geom::geography, "
                                                   "ST_SetSRID(ST_Point(%s, %s), 4490)::geography, 250)", [grid["x"], grid["y"]]).fetchall()}
    located = json.loads(cityops(own_city, "query", "locate", grid["x"], grid["y"]).stdout)
    text = json.dumps(located, ensure_ascii=False)
    assert grid["bgcode"] in text
    within = json.loads(cityops(own_city, "query", "within", "manhole_covers", grid["x"], grid["y"], "--distance", 250).stdout)
    assert near and {hit["id"] for hit in within} == near
    distances = [hit["distance_m"] for hit in within]
    assert distances == sorted(distances) and distances[-1] <= 250  # nearest first


def test_install_second_run_only_checks(tmp_path):
    started = time.monotonic()
    result = subprocess.run([str(ROOT / "scripts" / "install.sh")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout + result.stderr  # every stamp matched: nothing reinstalled
    assert seconds < 10, f"second install.sh took {seconds:.1f} s"


def _start(port: int, env: dict) -> tuple[subprocess.Popen, float]:
    started = time.monotonic()
    process = subprocess.Popen([str(ROOT / "run"), "--port", str(port)], cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, started


def _up(process: subprocess.Popen, port: int, started: float, limit_s: float) -> float:
    while time.monotonic() - started < limit_s:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.3)
    pytest.fail(f"./run not serving after {limit_s} s")


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_run_serves_the_city_and_starts_fast_the_second_time(databases, settings):
    if not settings.uses_own_cluster:
        pytest.skip("./run makes its database on the self-managed cluster")
    name = f"cityops_test_{os.getpid()}_run"
    databases.names.append(name)  # dropped with the others at the end of the run
    env = {k: v for k, v in os.environ.items() if k != "CITYOPS_DATABASE_URL"} | {"CITYOPS_DATABASE_NAME": name}
    times = []
    for limit in (FIRST_START_LIMIT_S, SECOND_START_LIMIT_S):
        port = free_port()
        process, started = _start(port, env)
        try:
            times.append(_up(process, port, started, limit))
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{base}/collections/districts/items").json()["numberMatched"] == 5
            assert httpx.get(f"{base}/map/").status_code == 200
            assert httpx.get(f"{base}/collections/stall_sites/items", params={"limit": 1}).json()["numberMatched"] == 950
        finally:
            _stop(process)
    print(f"./run first start {times[0]:.1f} s (demo city loaded), second start {times[1]:.1f} s")
    assert times[1] < times[0]
