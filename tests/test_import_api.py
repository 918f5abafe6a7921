"""Imports over HTTP as background jobs, and streaming exports."""

from __future__ import annotations

import json
import time

import pyogrio

from gis.db import open_connection
from layers.catalogue import FURNITURE_CLASSES
from tests.conftest import bearer
from tests.support.import_files import BROKEN_CSV

POINTS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"objname": "API bench"}, "geometry": {"type": "Point", "coordinates": [118.2101 + k * 1e-4, 33.9101]}}
    for k in range(5)]}


def _upload(client, key=None, content=None, name="benches.geojson", **form):
    files = {"file": (name, content if content is not None else json.dumps(POINTS).encode(), "application/geo+json")}
    return client.post("/imports", files=files, data={"layer": "city_furniture", "class": "0690", **form},
                       headers=bearer(key) if key else {})


def _wait(client, key, job_id) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/imports/{job_id}", headers=bearer(key)).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_upload_needs_an_editor_key(client, keys):
    assert _upload(client).status_code == 401
    assert _upload(client, keys["viewer"]).status_code == 403
    assert _upload(client, keys["editor_sucheng"]).status_code == 403


def test_bad_uploads_are_4xx(client, keys):
    assert _upload(client, keys["editor"], content=b"not a gis file", name="x.txt").status_code == 400
    assert _upload(client, keys["editor"], layer="no_such_layer").status_code == 404
    assert _upload(client, keys["editor"], mapping="../../etc/passwd").status_code == 400
    assert _upload(client, keys["editor"], mode="merge").status_code == 400


def test_upload_runs_as_a_job_and_lands(client, keys, city_db):
    response = _upload(client, keys["editor"])
    assert response.status_code == 202 and response.headers["Location"].startswith("/imports/")
    job = _wait(client, keys["editor"], response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["report"]["inserted"] == {"city_furniture": 5} and job["rows_done"] == 5
    with open_connection(city_db) as conn:  # polled from another process: the job row is in the database
        row = conn.execute("SELECT state, report FROM city.import_job WHERE id = %s", [job["id"]]).fetchone()
        assert row["state"] == "succeeded"
        assert conn.execute("DELETE FROM city.component WHERE objname = 'API bench'").rowcount == 5
        conn.commit()


def _furniture(city_db) -> list[tuple]:
    with open_connection(city_db) as conn:  # another connection, after the job
        return [tuple(r.values()) for r in conn.execute(
            "SELECT objcode, objname, ST_AsBinary(geom) AS geom FROM city.component "
            "WHERE class_code = ANY(%s) ORDER BY objcode", [list(FURNITURE_CLASSES)]).fetchall()]


def test_a_job_failing_part_way_reports_why_and_writes_nothing(client, keys, city_db):
    """A replace job empties the layer in its transaction, stages and checks the file, then fails on
    too many rejects: the layer, read from another connection afterwards, is row for row as before."""
    before = _furniture(city_db)
    assert before
    response = client.post("/imports", files={"file": ("broken.csv", BROKEN_CSV.encode(), "text/csv")},
                           data={"layer": "city_furniture", "mode": "replace", "max_rejects": "2"}, headers=bearer(keys["editor"]))
    assert response.status_code == 202, response.text
    job = _wait(client, keys["editor"], response.json()["id"])
    assert job["state"] == "failed" and "6 rows rejected" in job["error"] and "Nothing was imported" in job["error"], job
    assert job["rows_done"] == 7 and job["phase"] == "check", job  # it failed after reading every row, not at the door
    assert _furniture(city_db) == before


def test_exports_stream_each_format(client, tmp_path):
    for ext in ("geojson", "csv", "gpkg", "fgb", "shp"):
        response = client.get(f"/exports/streetlights.{ext}", params={"bbox": "118.20,33.90,118.22,33.92"})
        assert response.status_code == 200, response.text
        path = tmp_path / f"out.{'zip' if ext == 'shp' else ext}"
        path.write_bytes(response.content)
        assert pyogrio.read_info(str(path), force_feature_count=True)["features"] > 100
    assert client.get("/exports/streetlights.xls").status_code == 400
    assert client.get("/exports/nope.gpkg").status_code == 404


def _wait_export(client, key: str, job_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/exports/jobs/{job_id}", headers=bearer(key)).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"export job {job_id} did not end: {job}")


def test_a_large_export_runs_as_a_job_and_is_downloaded_when_done(client, keys, tmp_path, city_db):
    bbox = "118.20,33.90,118.24,33.94"
    early = client.get(f"/exports/jobs/{0}/file", headers=bearer(keys["viewer"]))
    assert early.status_code == 404
    assert client.post("/exports/streetlights.fgb").status_code == 401  # a job is a key holder's
    response = client.post("/exports/streetlights.fgb", params={"bbox": bbox}, headers=bearer(keys["viewer"]))
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/exports/jobs/{response.json()['id']}"
    job = _wait_export(client, keys["viewer"], response.json()["id"])
    assert job["state"] == "succeeded" and job["progress"] == 1, job
    assert "output" not in job["export"] and "path" not in job["result"]  # no server paths shown
    download = client.get(f"/exports/jobs/{job['id']}/file", headers=bearer(keys["viewer"]))
    assert download.status_code == 200 and download.headers["content-type"] == "application/flatgeobuf"
    (tmp_path / "jobbed.fgb").write_bytes(download.content)
    streamed = client.get("/exports/streetlights.fgb", params={"bbox": bbox})
    (tmp_path / "streamed.fgb").write_bytes(streamed.content)
    counted = [pyogrio.read_info(str(tmp_path / name), force_feature_count=True)["features"]
               for name in ("jobbed.fgb", "streamed.fgb")]
    assert counted[0] == counted[1] == job["result"]["features"] == job["total"] > 100

    assert client.post("/exports/streetlights.xls", headers=bearer(keys["viewer"])).status_code == 400
    assert client.post("/exports/nope.gpkg", headers=bearer(keys["viewer"])).status_code == 404
    bad_box = client.post("/exports/streetlights.gpkg", params={"bbox": "1,2,3"}, headers=bearer(keys["viewer"]))
    assert bad_box.status_code == 400 and "bbox" in bad_box.json()["description"]

    ended = client.post(f"/exports/jobs/{job['id']}/cancel", headers=bearer(keys["viewer"]))
    assert ended.status_code == 409
    other = client.post(f"/exports/jobs/{job['id']}/cancel", headers=bearer(keys["editor"]))
    assert other.status_code == 403 and "another key" in other.json()["description"]
