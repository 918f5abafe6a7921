"""The drone review queue as a shared session fixture (registered in tests/conftest.py).

A small synthetic pair inside 宿城区 is uploaded to the shared `city_db` through the real API
(`POST /orthophotos` ×4 → `POST /drone/detections` → poll until done), once per run: the drone
review tests decide some of its candidates and the wall's browser test confirms one of the rest,
so both work on the same real queue and the detection pipeline runs once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from rasterio.warp import transform_geom
from shapely.geometry import mapping

from tests.support.drone_scenes import SceneSpec, write_scene_pair
from gis.db import open_connection


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload_orthophoto(client, key, path, kind) -> int:
    with open(path, "rb") as f:
        answer = client.post("/orthophotos", headers=_bearer(key), files={"file": (path.name, f)}, data={"kind": kind})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def wait_for_job(client, job_id, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/drone/detections/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        assert 0 <= job["progress"] <= 1
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


def to_4490(polygon) -> dict:
    return transform_geom("EPSG:4548", "EPSG:4490", mapping(polygon))


@pytest.fixture(scope="session")
def city_pair(tmp_path_factory):
    """A pair inside 宿城区 (321302) of the demo city, away from its registered buildings and water."""
    spec = SceneSpec(size_px=2048, gsd_m=0.05, seed=3, new_structures=8, origin=(618500.0, 3754500.0),
                     shift_m=(0.17, 0.13), rotation_deg=0.3, scale=1.0004, gain=1.12, offset=-9.0)
    return spec, write_scene_pair(tmp_path_factory.mktemp("city"), spec)


@pytest.fixture(scope="session")
def orthophoto_files(city_db, settings):
    """The managed orthophoto folder the test app writes to; catalogued test files are removed at the end."""
    from drone.ingest import managed_dir

    yield managed_dir(settings)
    with open_connection(city_db) as conn:
        for row in conn.execute("SELECT file_path, display_path FROM city.orthophoto"):
            for path in (row["file_path"], row["display_path"]):
                if path:
                    Path(path).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def drone_flights(client, keys, city_pair, orthophoto_files) -> dict[str, int]:
    """The pair's two RGB orthophotos and two DSMs, uploaded with an enforcement key: name → orthophoto id."""
    _, pair = city_pair
    return {name: upload_orthophoto(client, keys["enforcement"], getattr(pair, name), kind)
            for name, kind in (("before_rgb", "rgb"), ("after_rgb", "rgb"), ("before_dsm", "dsm"), ("after_dsm", "dsm"))}


@pytest.fixture(scope="session")
def registered_truth(city_db, city_pair):
    """One planted structure is registered (legal) before the flight is analysed: it must be dropped."""
    _, pair = city_pair
    with open_connection(city_db) as conn:
        conn.execute("INSERT INTO city.building (district_code, name, permit_no, geom) "
                     "VALUES ('321302', 'permitted shed', 'TEST-1', ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4490)))",
                     [json.dumps(to_4490(pair.truth[0]))])
        conn.commit()
    return pair.truth[0]


@pytest.fixture(scope="session")
def pending_candidates(client, keys, drone_flights, registered_truth) -> dict:
    """The finished detection job (its row as `GET /drone/detections/{id}` gives it) whose candidates
    wait in the shared review queue. Tests that decide candidates must leave some pending."""
    answer = client.post("/drone/detections", headers=_bearer(keys["enforcement"]), json={
        "before_id": drone_flights["before_rgb"], "after_id": drone_flights["after_rgb"],
        "before_dsm_id": drone_flights["before_dsm"], "after_dsm_id": drone_flights["after_dsm"]})
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"].endswith(f"/drone/detections/{answer.json()['id']}")
    job = wait_for_job(client, answer.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    return job
