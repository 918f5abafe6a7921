"""Tile archives and tile seeding started over HTTP (POST /tile-archives, POST /tile-seeds, admin key):
202 and a job, polled at /jobs/{id}; the archive's tiles are the tiles the server serves; the seeding
asks this server for every tile; bad requests are 4xx with the reason and queue nothing."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
import time

import httpx
import mapbox_vector_tile
import pytest
from pmtiles.reader import MmapSource, Reader, all_tiles

from gis.db import open_connection
from tests.conftest import ARTIFACTS, bearer
from tiles.jobs import ArchiveRequest, archive_here, tile_count
from tiles.matrix_sets import WEB_MERCATOR_QUAD

CORE = [118.25, 33.93, 118.31, 33.99]  # the urban core of the demo city


def _wait(get, job_id: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(f"/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not end: {job}")


def _features(tile: bytes) -> dict[str, list[str]]:
    """A vector tile's features per layer, in no order (PostGIS returns rows in no set order)."""
    return {name: sorted(json.dumps([f["geometry"], f["properties"]], sort_keys=True) for f in layer["features"])
            for name, layer in mapbox_vector_tile.decode(tile).items()}


def _jobs_in_queue(city_db: str) -> int:
    with open_connection(city_db) as conn:
        return conn.execute("SELECT count(*) AS n FROM city.job WHERE kind IN ('tile_archive', 'tile_seed')").fetchone()["n"]


def test_a_pmtiles_archive_holds_the_tiles_the_server_serves(client, keys, tmp_path):
    admin = bearer(keys["admin"])
    started = client.post("/tile-archives", json={"minzoom": 12, "maxzoom": 14, "bbox": CORE}, headers=admin)
    assert started.status_code == 202, started.text
    job = started.json()
    assert started.headers["Location"] == f"/jobs/{job['id']}" and job["kind"] == "tile_archive"
    assert "output" not in job["request"]  # no server paths shown
    early = client.get(f"/tile-archives/{job['id']}/file", headers=admin)
    assert early.status_code in (200, 409)  # 409 while it runs
    ended = _wait(lambda url: client.get(url, headers=admin), job["id"])
    assert ended["state"] == "succeeded" and ended["done"] == ended["total"] == tile_count(CORE, range(12, 15)), ended
    download = client.get(f"/tile-archives/{job['id']}/file", headers=admin)
    assert download.status_code == 200 and download.headers["content-type"] == "application/vnd.pmtiles"
    archive = tmp_path / "core.pmtiles"
    archive.write_bytes(download.content)
    with open(archive, "rb") as f:
        reader = Reader(MmapSource(f))
        assert (reader.header()["min_zoom"], reader.header()["max_zoom"]) == (12, 14)
        entries = {(z, x, y): data for (z, x, y), data in all_tiles(reader.get_bytes)}
    assert 0 < len(entries) == ended["result"]["tiles"] <= ended["total"]
    wanted = {(t.z, t.x, t.y) for t in WEB_MERCATOR_QUAD.tiles(*CORE, range(12, 15))}
    assert set(entries) <= wanted
    for z, x, y in sorted(entries)[:: max(1, len(entries) // 12)]:  # a dozen of them, every zoom
        served = client.get(f"/tiles/WebMercatorQuad/{z}/{y}/{x}")
        assert served.status_code == 200
        archived = _features(gzip.decompress(entries[(z, x, y)]))
        assert archived == _features(served.content), (z, x, y)
        assert "districts" in archived and len(archived) > 1


def test_an_mbtiles_archive_of_some_layers(client, keys, tmp_path):
    admin = bearer(keys["admin"])
    body = {"format": "mbtiles", "minzoom": 10, "maxzoom": 12, "layers": ["manhole_covers", "districts"]}
    job = client.post("/tile-archives", json=body, headers=admin).json()
    ended = _wait(lambda url: client.get(url, headers=admin), job["id"])
    assert ended["state"] == "succeeded", ended
    download = client.get(f"/tile-archives/{job['id']}/file", headers=admin)
    assert download.status_code == 200 and download.headers["content-type"] == "application/vnd.sqlite3"
    archive = tmp_path / "covers.mbtiles"
    archive.write_bytes(download.content)
    with sqlite3.connect(archive) as db:
        rows = db.execute("SELECT zoom_level, tile_data FROM tiles").fetchall()
        names = dict(db.execute("SELECT name, value FROM metadata").fetchall())
    assert len(rows) == ended["result"]["tiles"] > 0 and {z for z, _ in rows} == {10, 11, 12}
    assert names["format"] == "pbf"
    layers = set().union(*(mapbox_vector_tile.decode(gzip.decompress(data)) for _, data in rows))
    assert layers == {"manhole_covers", "districts"}


@pytest.mark.parametrize("body, status, reason", [
    ({"minzoom": 14, "maxzoom": 12}, 400, "maxzoom 12 is below minzoom 14"),
    ({"maxzoom": 25}, 400, "maxzoom"),
    ({"minzoom": -1}, 400, "minzoom"),
    ({"bbox": [118.3, 33.9, 118.2, 34.0]}, 400, "west < east"),
    ({"bbox": [118.2, 33.9, 118.3]}, 400, "bbox"),
    ({"bbox": [116.0, 33.9, 118.3, 34.0]}, 400, "not inside the city"),
    ({"bbox": [0, 0, 1, 1], "maxzoom": 3}, 400, "not inside the city"),
    ({"minzoom": 0, "maxzoom": 18}, 400, "CITYOPS_TILE_JOB_MAX_TILES"),
    ({"layers": ["no_such_layer"]}, 400, "unknown layer 'no_such_layer'"),
    ({"imagery": True, "layers": ["districts"]}, 400, "imagery archive holds the mosaic only"),
    ({"day": "2026-05-01"}, 400, "day goes with imagery"),
    ({"format": "zip"}, 400, "format"),
    ({"image_format": "gif", "imagery": True}, 400, "image_format"),
    ({"output": "/etc/passwd"}, 400, "output"),  # no field chooses a server path
])
def test_bad_archive_requests_are_refused_with_the_reason(client, keys, city_db, body, status, reason):
    before = _jobs_in_queue(city_db)
    answer = client.post("/tile-archives", json=body, headers=bearer(keys["admin"]))
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["description"]
    assert _jobs_in_queue(city_db) == before


def test_tile_jobs_need_an_admin_key(client, keys, city_db):
    before = _jobs_in_queue(city_db)
    for path in ("/tile-archives", "/tile-seeds"):
        assert client.post(path, json={}).status_code == 401
        refused = client.post(path, json={}, headers=bearer(keys["editor"]))
        assert refused.status_code == 403 and "admin" in refused.json()["description"]
    assert client.get("/tile-archives/1/file", headers=bearer(keys["viewer"])).status_code == 403
    assert _jobs_in_queue(city_db) == before


def test_only_archives_built_over_http_are_served(client, keys, city_db, settings, tmp_path):
    admin = bearer(keys["admin"])
    mine = tmp_path / "mine.pmtiles"
    ended = archive_here(city_db, settings, ArchiveRequest(mine, "pmtiles", (8,)), "cli:test")
    assert ended["state"] == "succeeded" and mine.is_file()
    refused = client.get(f"/tile-archives/{ended['id']}/file", headers=admin)
    assert refused.status_code == 404 and "command line" in refused.json()["description"]
    assert client.get("/tile-archives/987654321/file", headers=admin).status_code == 404
    assert client.get("/tile-archives/x/file", headers=admin).status_code == 400


def test_a_seeding_asks_this_server_for_every_tile(live_server, keys, city_db):
    """Started over HTTP on a live server: its workers request the tiles from the server itself, whose
    access log then holds exactly the expected tiles."""
    log = ARTIFACTS / "live_server.log"
    start = log.stat().st_size
    admin = bearer(keys["admin"])
    with httpx.Client(base_url=live_server, timeout=60) as http:
        bad = http.post("/tile-seeds", json={"maxzoom": 22}, headers=admin)
        assert bad.status_code == 400 and "CITYOPS_TILE_JOB_MAX_TILES" in bad.json()["description"]
        started = http.post("/tile-seeds", json={"minzoom": 11, "maxzoom": 13, "bbox": CORE, "layers": ["districts"]},
                            headers=admin)
        assert started.status_code == 202, started.text
        assert "server" not in started.json()["request"]
        ended = _wait(lambda url: http.get(url, headers=admin), started.json()["id"])
    wanted = {(t.z, t.y, t.x) for t in WEB_MERCATOR_QUAD.tiles(*CORE, range(11, 14))}
    assert ended["state"] == "succeeded" and ended["result"]["tiles"] == len(wanted) == ended["total"], ended
    with open(log, "rb") as f:
        f.seek(start)
        served = re.findall(r'"GET /collections/districts/tiles/WebMercatorQuad/(\d+)/(\d+)/(\d+) HTTP/1.1" (\d+)',
                            f.read().decode())
    assert {(int(z), int(y), int(x)) for z, y, x, _ in served} == wanted
    assert {status for *_, status in served} <= {"200", "204"}


def test_an_archive_past_its_keep_time_is_swept(settings, tmp_path, monkeypatch):
    """An archive built over HTTP is kept CITYOPS_TILE_ARCHIVE_KEEP_HOURS, then the workers' sweep
    removes it; one an open job is writing is kept."""
    import os

    from gis.settings import settings_of
    from tiles.jobs import TILE_ARCHIVE, archives_dir

    monkeypatch.setenv("CITYOPS_TILE_ARCHIVE_KEEP_HOURS", "1")
    settings_of.cache_clear()
    try:
        state = settings.model_copy(update={"state_dir": tmp_path})
        old, writing, fresh = (archives_dir(state) / name for name in ("old", "writing", "fresh"))
        for folder in (old, writing, fresh):
            folder.mkdir(parents=True)
            (folder / "cityops-tiles.pmtiles").write_bytes(b"x")
        two_hours_ago = time.time() - 7200
        for folder in (old, writing):
            os.utime(folder, (two_hours_ago, two_hours_ago))
        open_rows = [{"payload": {"output": str(writing / "cityops-tiles.pmtiles")}}]
        assert list(TILE_ARCHIVE.orphans(open_rows, state)) == [old]
    finally:
        monkeypatch.undo()
        settings_of.cache_clear()
