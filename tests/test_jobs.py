"""The one job system: a job whose worker is killed (kill -9, mid-run) is picked up again by the
next worker and finishes once, for every job kind; a queued job can be cancelled; the CLI and the
API see the same rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyogrio
from pmtiles.reader import MmapSource, Reader as PMTilesReader, all_tiles as pmtiles_entries
import pytest

from drone.ingest import managed_dir
from gis.db import open_connection
from tests.conftest import bearer
from tests.support.cli import CITYOPS

MARK = "job kill test"


def _job(conn, kind: str, worker_pid: int) -> dict | None:
    return conn.execute("SELECT * FROM city.job WHERE kind = %s AND worker LIKE %s ORDER BY id DESC LIMIT 1",
                        [kind, f"%:{worker_pid}"]).fetchone()


def _kill_when_under_way(city_db: str, kind: str, process: subprocess.Popen, under_way) -> dict:
    """Wait until the process runs a job of `kind` that `under_way(row)` says has started its work, then kill -9."""
    deadline = time.monotonic() + 120
    with open_connection(city_db, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = _job(conn, kind, process.pid)
            if row is not None and under_way(row):
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
                return row
            assert process.poll() is None, f"the worker ended before it could be killed: {process.stdout.read()}"
            time.sleep(0.05)
    raise AssertionError(f"no {kind} job got under way")


def _wait_until_ended(city_db: str, job_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    with open_connection(city_db, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT * FROM city.job WHERE id = %s", [job_id]).fetchone()
            if row["state"] not in ("queued", "running"):
                return row
            time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end: {row}")


@pytest.fixture()
def many_benches(tmp_path) -> tuple[Path, int]:
    rng = np.random.default_rng(13)
    n = 30_000
    xs, ys = 118.20 + 0.04 * rng.random(n), 33.90 + 0.03 * rng.random(n)
    path = tmp_path / "benches.geojsonl"
    path.write_text("".join(json.dumps({"type": "Feature", "properties": {"objname": MARK},
                                        "geometry": {"type": "Point", "coordinates": [x, y]}}) + "\n"
                            for x, y in zip(xs.tolist(), ys.tolist())))
    return path, n


def test_an_import_whose_worker_is_killed_is_run_again_by_the_next_worker(client, city_db, many_benches):
    path, n = many_benches
    env = {**os.environ, "CITYOPS_DATABASE_URL": city_db}
    process = subprocess.Popen([*CITYOPS, "import", str(path), "--layer", "city_furniture", "--class", "0690",
                                "--crs", "EPSG:4490"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = _kill_when_under_way(city_db, "import", process, lambda row: row["done"] > 0)
    try:
        # the app's worker pool (the `client` fixture's app) sees the dead process and runs the job again
        ended = _wait_until_ended(city_db, killed["id"])
        assert ended["state"] == "succeeded", ended["error"]
        assert ended["attempts"] == 2 and ended["worker"] is None
        assert ended["result"]["report"]["inserted"] == {"city_furniture": n}
        assert path.exists()  # the CLI's file is the user's, never removed
        view = client.get(f"/imports/{killed['id']}", headers=bearer(_viewer_key(city_db))).json()
        assert view["state"] == "succeeded" and view["rows_done"] == n
    finally:
        with open_connection(city_db) as conn:
            landed = conn.execute("DELETE FROM city.component WHERE objname = %s", [MARK]).rowcount
            conn.commit()
    assert landed == n  # once, not twice


def _viewer_key(city_db: str) -> str:
    from gis.keys import create_key
    with open_connection(city_db) as conn:
        key, _ = create_key(conn, "viewer", [], "job test viewer")
        conn.commit()
    return key


def test_a_detection_whose_worker_is_killed_is_run_again_by_the_next_worker(client, city_db, settings, drone_flights):
    env = {**os.environ, "CITYOPS_DATABASE_URL": city_db}
    process = subprocess.Popen([*CITYOPS, "drone", "detect", "--before", str(drone_flights["before_rgb"]),
                                "--after", str(drone_flights["after_rgb"])],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = _kill_when_under_way(city_db, "detection", process, lambda row: row["progress"] > 0.1)
    staging = managed_dir(settings) / ".staging"
    try:
        ended = _wait_until_ended(city_db, killed["id"])
        assert ended["state"] == "succeeded", ended["error"]
        assert ended["attempts"] == 2 and ended["result"]["candidates_found"] > 0
        assert not list(staging.glob(f"detection-{killed['id']}-*"))  # the dead run's partial change map is gone
        with open_connection(city_db) as conn:
            maps = conn.execute("SELECT count(*) AS n FROM city.orthophoto WHERE name = %s",
                                [f"change map of detection {killed['id']}"]).fetchone()["n"]
        assert maps == 1  # one catalogued change map: the killed run committed nothing
        assert client.get(f"/drone/detections/{killed['id']}").json()["state"] == "succeeded"
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.change_candidate WHERE detection_id = %s", [killed["id"]])
            for row in conn.execute("DELETE FROM city.orthophoto WHERE name = %s RETURNING file_path",
                                    [f"change map of detection {killed['id']}"]).fetchall():
                Path(row["file_path"]).unlink(missing_ok=True)
            conn.commit()


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def test_an_export_whose_worker_is_killed_is_written_again_by_the_next_worker(client, city_db, tmp_path):
    """Killed while its partial file is being written: the next worker removes that file and writes the
    whole export to the path the CLI was given; nothing half-written is ever at that path."""
    out = tmp_path / "components.gpkg"
    env = {**os.environ, "CITYOPS_DATABASE_URL": city_db}
    process = subprocess.Popen([*CITYOPS, "export", "--layer", "components", "--format", "gpkg", "-o", str(out)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = _kill_when_under_way(city_db, "export", process, lambda row: bool(_partials(tmp_path)))
    assert not out.exists()  # killed mid-write: the target was never there half-written
    ended = _wait_until_ended(city_db, killed["id"])
    assert ended["state"] == "succeeded", ended["error"]
    assert ended["attempts"] == 2 and ended["progress"] == 1
    assert not _partials(tmp_path)  # the dead run's partial file is gone
    with open_connection(city_db) as conn:
        truth = conn.execute("SELECT count(*) AS n FROM city.component").fetchone()["n"]
    frame = pyogrio.read_info(out)
    assert frame["features"] == truth == ended["result"]["features"] > 50_000
    served = client.get(f"/exports/jobs/{killed['id']}/file", headers=bearer(_viewer_key(city_db)))
    assert served.status_code == 404 and "command line" in served.json()["description"]  # the user's file stays theirs


def test_a_tile_archive_whose_worker_is_killed_is_built_again_by_the_next_worker(client, city_db, tmp_path):
    out = tmp_path / "city.pmtiles"
    env = {**os.environ, "CITYOPS_DATABASE_URL": city_db}
    process = subprocess.Popen([*CITYOPS, "tiles", "export", "-o", str(out), "--zoom", "0-12"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = _kill_when_under_way(city_db, "tile_archive", process, lambda row: row["done"] > 0)
    assert killed["done"] < killed["total"] and not out.exists()
    ended = _wait_until_ended(city_db, killed["id"])
    assert ended["state"] == "succeeded", ended["error"]
    assert ended["attempts"] == 2 and ended["done"] == ended["total"]
    assert not _partials(tmp_path)
    with open(out, "rb") as f:
        reader = PMTilesReader(MmapSource(f))
        assert reader.header()["max_zoom"] == 12
        assert sum(1 for _ in pmtiles_entries(reader.get_bytes)) == ended["result"]["tiles"] > 0


def test_a_tile_seed_whose_worker_is_killed_is_run_again_by_the_next_worker(client, city_db, live_server):
    env = {**os.environ, "CITYOPS_DATABASE_URL": city_db}
    process = subprocess.Popen([*CITYOPS, "tiles", "seed", "--zoom", "0-14", "--layer", "districts", "--server", live_server],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = _kill_when_under_way(city_db, "tile_seed", process, lambda row: row["done"] > 0)
    assert killed["done"] < killed["total"]
    ended = _wait_until_ended(city_db, killed["id"])
    assert ended["state"] == "succeeded", ended["error"]
    assert ended["attempts"] == 2 and ended["done"] == ended["total"] == ended["result"]["tiles"]


def test_a_cancelled_job_whose_worker_died_ends_cancelled(client, city_db, keys):
    from gis import jobs
    with open_connection(city_db, autocommit=True) as conn:
        with conn.transaction():  # taken at once by a worker on another machine
            job = jobs.submit(conn, "import", {"file_name": "x.geojson", "path": "/nonexistent/x.geojson",
                                               "owned": False, "options": {}}, "test")
            conn.execute("UPDATE city.job SET state = 'running', worker = 'elsewhere:1', attempts = 1, "
                         "started_at = now(), heartbeat_at = now() WHERE id = %s", [job["id"]])
        answer = client.post(f"/imports/{job['id']}/cancel", headers=bearer(keys["editor"]))
        assert answer.status_code == 200 and answer.json()["state"] == "running"  # it stops at its next report
        conn.execute("UPDATE city.job SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", [job["id"]])
    ended = _wait_until_ended(city_db, job["id"], timeout=30)  # the app's workers sweep for dead ones
    assert ended["state"] == "cancelled" and "elsewhere:1 stopped" in ended["error"]
    again = client.post(f"/imports/{job['id']}/cancel", headers=bearer(keys["editor"]))
    assert again.status_code == 409 and "nothing to cancel" in again.json()["description"]
    assert client.post("/imports/987654321/cancel", headers=bearer(keys["editor"])).status_code == 404
    assert client.post(f"/imports/{job['id']}/cancel", headers=bearer(keys["viewer"])).status_code == 403


def test_every_kind_of_job_is_seen_and_cancelled_through_the_api(client, city_db, keys):
    """`GET /jobs` and `POST /jobs/{id}/cancel` (admin) show and stop jobs of any kind, as `cityops jobs` does."""
    from gis import jobs
    with open_connection(city_db, autocommit=True) as conn, conn.transaction():
        # held by a worker on another machine, so no worker of this app runs it meanwhile
        queued = jobs.submit(conn, "tile_seed", {"server": "http://127.0.0.1:9", "zooms": [0], "bbox": None, "layers": []},
                             "api test")
        conn.execute("UPDATE city.job SET state = 'running', worker = 'elsewhere:3', attempts = 1, started_at = now(), "
                     "heartbeat_at = now() + interval '1 hour' WHERE id = %s", [queued["id"]])
    admin = bearer(keys["admin"])
    listed = client.get("/jobs", params={"kind": "tile_seed"}, headers=admin)
    assert listed.status_code == 200 and queued["id"] in [job["id"] for job in listed.json()["jobs"]]
    assert {job["kind"] for job in listed.json()["jobs"]} == {"tile_seed"}
    assert client.get(f"/jobs/{queued['id']}", headers=admin).json()["worker"] == "elsewhere:3"
    cancelled = client.post(f"/jobs/{queued['id']}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    with open_connection(city_db, autocommit=True) as conn:  # its worker is gone for good: end it here
        conn.execute("UPDATE city.job SET state = 'cancelled', worker = NULL, finished_at = now() WHERE id = %s",
                     [queued["id"]])
    assert client.post(f"/jobs/{queued['id']}/cancel", headers=admin).status_code == 409
    bad = client.get("/jobs", params={"kind": "nosuch"}, headers=admin)
    assert bad.status_code == 400 and "tile_archive" in bad.json()["description"]
    assert client.get("/jobs/987654321", headers=admin).status_code == 404
    assert client.get("/jobs", headers=bearer(keys["viewer"])).status_code == 403
    assert client.post(f"/jobs/{queued['id']}/cancel", headers=bearer(keys["editor"])).status_code == 403


def test_claims_are_fair_between_kinds_and_never_take_a_locked_job(databases):
    """On a database no worker polls: a running import puts a queued detection before an older
    queued import; two workers claiming at once never get the same job."""
    from gis import jobs
    info = databases.create("jobs")
    with open_connection(info, autocommit=True) as conn, open_connection(info, autocommit=True) as other:
        first, second = (jobs.submit(conn, "import", {"n": i}, "test") for i in (1, 2))
        detection = jobs.submit(conn, "detection", {}, "test")
        assert jobs.claim(conn, ["import", "detection"], "w1")["id"] == first["id"]  # oldest first
        assert jobs.claim(conn, ["import", "detection"], "w1")["id"] == detection["id"]  # the kind with none running
        assert jobs.claim(conn, ["detection"], "w1") is None
        with other.transaction():  # a worker in the middle of claiming holds the row: the next one skips it
            held = other.execute("SELECT id FROM city.job WHERE id = %s FOR UPDATE", [second["id"]]).fetchone()
            assert held and jobs.claim(conn, ["import"], "w2") is None
        assert jobs.claim(conn, ["import"], "w2")["id"] == second["id"]


def test_claims_are_fair_between_submitters(databases):
    from gis import jobs
    info = databases.create("jobs_fair")
    with open_connection(info, autocommit=True) as conn:
        batch = [jobs.submit(conn, "import", {"n": i}, "alice") for i in range(3)]
        upload = jobs.submit(conn, "import", {"n": 9}, "bob")
        assert jobs.claim(conn, ["import"], "w1")["id"] == batch[0]["id"]
        assert jobs.claim(conn, ["import"], "w2")["id"] == upload["id"]  # bob's before alice's second


def test_files_no_open_job_accounts_for_are_swept(databases, tmp_path):
    from drone.jobs import DETECTION
    from gis import jobs
    from gis.settings import Settings
    from layers.export_jobs import EXPORT, exports_dir
    from layers.importer.jobs import IMPORT, uploads_dir

    info = databases.create("jobs_sweep")
    settings = Settings(state_dir=tmp_path)
    uploads, staging = uploads_dir(settings), managed_dir(settings) / ".staging"
    orphan, kept, fresh = uploads / "dead-upload", uploads / "queued-upload", uploads / "arriving-upload"
    slow = uploads / "slowly-arriving-upload"  # begun an hour ago, its file still growing
    for folder in (orphan, kept, fresh, slow, staging):
        folder.mkdir(parents=True)
    (orphan / "a.gpkg").write_bytes(b"x")
    (kept / "b.gpkg").write_bytes(b"x")
    (slow / "c.gpkg").write_bytes(b"x")
    partial = staging / "detection-424242-ab.tif"
    partial.write_bytes(b"x")
    expired, downloadable = exports_dir(settings) / "31", exports_dir(settings) / "32"
    for folder in (expired, downloadable):
        folder.mkdir(parents=True)
        (folder / "roads.gpkg").write_bytes(b"x")
    hour_ago, two_days_ago = time.time() - 3600, time.time() - 2 * 86400
    for path in (orphan, orphan / "a.gpkg", kept, partial, slow):
        os.utime(path, (hour_ago, hour_ago))
    os.utime(expired, (two_days_ago, two_days_ago))  # older than CITYOPS_EXPORT_KEEP_HOURS (24)
    with open_connection(info, autocommit=True) as conn:
        jobs.submit(conn, "import", {"path": str(kept / "b.gpkg"), "owned": True}, "test")
        jobs.sweep_orphans(conn, {"import": IMPORT, "detection": DETECTION, "export": EXPORT}, settings)
    assert not orphan.exists() and not partial.exists() and not expired.exists()
    assert kept.exists() and fresh.exists() and slow.exists()  # an open job's upload, and uploads still being received
    assert downloadable.exists()  # an export file within its keep time


def test_a_dead_detection_leaves_no_staged_change_map(databases, tmp_path):
    """A detection killed while writing its change map's COGs (or between them and the commit): the
    recovery removes the raw change map and both staged COGs, named as the job writes them."""
    from drone.ingest import StagedCog
    from drone.jobs import DETECTION, staging_prefix
    from gis import jobs
    from gis.settings import Settings

    info = databases.create("jobs_staged_cog")
    settings = Settings(state_dir=tmp_path)
    staging = managed_dir(settings) / ".staging"
    staging.mkdir(parents=True)
    with open_connection(info, autocommit=True) as conn:
        dead, alive = (jobs.submit(conn, "detection", {}, "test") for _ in range(2))
        for job, worker in ((dead, "elsewhere:1"), (alive, "elsewhere:2")):
            conn.execute("UPDATE city.job SET state = 'running', worker = %s, attempts = 1, started_at = now(), "
                         "heartbeat_at = now() - interval '1 hour' * (%s = 'elsewhere:1')::int WHERE id = %s",
                         [worker, worker, job["id"]])
        files = {}
        for job in (dead, alive):
            cog = StagedCog(settings, "change", None, staging_prefix(job["id"]))
            files[job["id"]] = [staging / f"{staging_prefix(job['id'])}0a1b.tif", cog.partial, cog.display_partial]
            for path in files[job["id"]]:
                path.write_bytes(b"partial")
        recovered = jobs.recover(conn, {"detection": DETECTION}, settings, stale_after_s=30)
    assert [row["id"] for row in recovered] == [dead["id"]] and recovered[0]["state"] == "queued"
    assert not any(path.exists() for path in files[dead["id"]])
    assert all(path.exists() for path in files[alive["id"]])  # a running job's files are its own


def test_a_worker_taken_for_dead_commits_nothing(databases):
    """A worker that was only slow, whose job went to another worker meanwhile: its success and its
    work roll back together, so the job's work lands once."""
    from gis import jobs
    info = databases.create("jobs_takeover")
    with open_connection(info, autocommit=True) as conn:
        jobs.submit(conn, "import", {}, "test")
        row = jobs.claim(conn, ["import"], "slow:1")
        job = jobs.Job(row, conn)
        conn.execute("UPDATE city.job SET worker = 'next:2', attempts = 2 WHERE id = %s", [job.id])  # requeued, claimed
        conn.execute("CREATE TABLE city.work_done (n integer)")
        with pytest.raises(jobs.JobTakenOver):
            with conn.transaction():
                conn.execute("INSERT INTO city.work_done VALUES (1)")
                job.succeed(conn, {"n": 1})
        assert conn.execute("SELECT count(*) AS n FROM city.work_done").fetchone()["n"] == 0
        assert conn.execute("SELECT state, worker FROM city.job WHERE id = %s", [job.id]).fetchone() == \
            {"state": "running", "worker": "next:2"}


@pytest.fixture
def short_export_keep(monkeypatch):
    """Export files kept 4 s, and the workers sweeping every 0.5 s: the keep time in seconds."""
    from gis.settings import settings_of

    keep_s = 4.0
    monkeypatch.setenv("CITYOPS_EXPORT_KEEP_HOURS", str(keep_s / 3600))
    monkeypatch.setenv("CITYOPS_JOB_SWEEP_S", "0.5")
    settings_of.cache_clear()  # settings are read once per process
    yield keep_s
    monkeypatch.undo()
    settings_of.cache_clear()


def test_an_expired_api_export_is_swept_while_the_workers_run(settings, databases, tmp_path, short_export_keep):
    """The workers sweep every CITYOPS_JOB_SWEEP_S, not only when they start: an API export is
    downloadable for CITYOPS_EXPORT_KEEP_HOURS, then its file is removed by the running server."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from gis.keys import create_key
    from layers.export_jobs import exports_dir

    keep_s = short_export_keep
    info = databases.create("export_sweep")  # its own queue: only this app's workers take the job
    with open_connection(info) as conn:
        key, _ = create_key(conn, "viewer", [], "export sweep")
        conn.commit()
    state = settings.model_copy(update={"state_dir": tmp_path})
    with TestClient(create_app(state, conninfo=info)) as client:
        submitted = client.post("/exports/stall_sites.geojson", headers=bearer(key))
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        ended = _wait_until_ended(info, job_id, timeout=60)
        assert ended["state"] == "succeeded", ended
        written = time.monotonic()
        folder = exports_dir(state) / str(job_id)
        download = client.get(f"/exports/jobs/{job_id}/file", headers=bearer(key))
        assert download.status_code == 200 and download.json()["type"] == "FeatureCollection"
        while folder.exists() and time.monotonic() - written < keep_s + 10:
            time.sleep(0.2)
        assert not folder.exists(), "the expired export is still there"
        assert time.monotonic() - written > keep_s - 1  # kept its keep time, give or take the folder's mtime
        gone = client.get(f"/exports/jobs/{job_id}/file", headers=bearer(key))
        assert gone.status_code == 404 and "is gone" in gone.json()["description"]
