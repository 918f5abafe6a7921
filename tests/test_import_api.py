"""Imports over HTTP as background jobs, and streaming exports."""

from __future__ import annotations

import json
import time

import pyogrio

from gis.db import open_connection
from tests.conftest import bearer

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


def test_a_failing_job_reports_why_and_writes_nothing(client, keys, city_db):
    broken = json.dumps(POINTS).encode()[:-40]
    response = _upload(client, keys["editor"], content=broken + b"\n", name="cut.geojsonl")
    if response.status_code == 400:  # GDAL may see the damage already when the upload is opened
        return
    job = _wait(client, keys["editor"], response.json()["id"])
    assert job["state"] == "failed" and "nothing was imported" in job["error"]


def test_exports_stream_each_format(client, tmp_path):
    for ext in ("geojson", "csv", "gpkg", "fgb", "shp"):
        response = client.get(f"/exports/streetlights.{ext}", params={"bbox": "118.20,33.90,118.22,33.92"})
        assert response.status_code == 200, response.text
        path = tmp_path / f"out.{'zip' if ext == 'shp' else ext}"
        path.write_bytes(response.content)
        assert pyogrio.read_info(str(path), force_feature_count=True)["features"] > 100
    assert client.get("/exports/streetlights.xls").status_code == 400
    assert client.get("/exports/nope.gpkg").status_code == 404
