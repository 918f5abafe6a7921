"""Change-detection jobs kept in `city.drone_detection` and a worker thread that runs them.

The row is the job: state, progress, cancel request, heartbeat and results all live there, so
any process can submit, poll or cancel, and whichever worker claims a job (SKIP LOCKED) runs it.
A job whose worker died (no heartbeat for STALE_AFTER) is queued again; one whose process shuts
down cleanly is handed back to the queue.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb
from rasterio.warp import transform_geom
from shapely.geometry import mapping

from drone.errors import CancelledError, NoOverlapError
from drone.ingest import managed_dir, staged_cog
from drone.pipeline import detect_changes
from drone.review import queue_candidates
from gis.db import open_connection
from gis.errors import CityOpsError, Conflict, InvalidInput, NotFound
from gis.settings import Settings

log = logging.getLogger("cityops.drone.jobs")

POLL_S = 1.0
STALE_AFTER = "2 minutes"
PROGRESS_EVERY_S = 0.5
# share of the progress bar: registration and calibration before the first block, COG + queue after the last
BLOCKS_START, BLOCKS_END = 0.1, 0.9

JOB_COLUMNS = ("id, state, progress, before_id, after_id, before_dsm_id, after_dsm_id, cancel_requested, error, "
               "residual_px, registration, candidates_found, candidates_queued, dropped_registered, dropped_known_illegal, "
               "dropped_dismissed, dropped_already_queued, dropped_outside_city, change_map_id, created_by, "
               "created_at, started_at, finished_at")
INPUT_KINDS = (("before_id", "rgb"), ("after_id", "rgb"), ("before_dsm_id", "dsm"), ("after_dsm_id", "dsm"))


def submit(conn: psycopg.Connection, *, before_id: int, after_id: int, before_dsm_id: int | None = None,
           after_dsm_id: int | None = None, created_by: str) -> dict:
    """Queue a detection after checking its inputs exist, have the right kinds and overlap."""
    ids = {"before_id": before_id, "after_id": after_id, "before_dsm_id": before_dsm_id, "after_dsm_id": after_dsm_id}
    if (before_dsm_id is None) != (after_dsm_id is None):
        raise InvalidInput("give both DSMs (before_dsm_id and after_dsm_id) or neither")
    if before_id == after_id:
        raise InvalidInput("before and after must be two different orthophotos")
    with conn.transaction():
        for field, kind in INPUT_KINDS:
            if ids[field] is None:
                continue
            row = conn.execute("SELECT kind FROM city.orthophoto WHERE id = %s", [ids[field]]).fetchone()
            if row is None:
                raise NotFound(f"{field}: no orthophoto with id {ids[field]}")
            if row["kind"] != kind:
                raise InvalidInput(f"{field}: orthophoto {ids[field]} is a {row['kind']} raster, not {kind}")
        overlap = conn.execute("SELECT ST_Intersects(b.geom, a.geom) AS overlap FROM city.orthophoto b, "
                               "city.orthophoto a WHERE b.id = %s AND a.id = %s", [before_id, after_id]).fetchone()
        if not overlap["overlap"]:
            raise NoOverlapError(f"orthophotos {before_id} and {after_id} do not overlap")
        return conn.execute(
            f"INSERT INTO city.drone_detection (before_id, after_id, before_dsm_id, after_dsm_id, created_by) "
            f"VALUES (%s, %s, %s, %s, %s) RETURNING {JOB_COLUMNS}",
            [before_id, after_id, before_dsm_id, after_dsm_id, created_by]).fetchone()


def get(conn: psycopg.Connection, job_id: int) -> dict:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM city.drone_detection WHERE id = %s", [job_id]).fetchone()
    if row is None:
        raise NotFound(f"no change-detection job with id {job_id}")
    return row


def cancel(conn: psycopg.Connection, job_id: int) -> dict:
    """A queued job is cancelled at once; a running one stops at its next block."""
    with conn.transaction():
        job = conn.execute("SELECT state FROM city.drone_detection WHERE id = %s FOR UPDATE", [job_id]).fetchone()
        if job is None:
            raise NotFound(f"no change-detection job with id {job_id}")
        if job["state"] not in ("queued", "running"):
            raise Conflict(f"job {job_id} has already {job['state']}; nothing to cancel")
        conn.execute("UPDATE city.drone_detection SET cancel_requested = true, "
                     "state = CASE state WHEN 'queued' THEN 'cancelled' ELSE state END, "
                     "finished_at = CASE state WHEN 'queued' THEN now() END WHERE id = %s", [job_id])
    return get(conn, job_id)


def claim(conn: psycopg.Connection, job_id: int | None = None) -> int | None:
    """Take a queued job for this process: `job_id`, or the oldest (or one whose worker stopped beating)."""
    row = conn.execute(f"""
        UPDATE city.drone_detection SET state = 'running', started_at = now(), heartbeat_at = now(), progress = 0
        WHERE id = (SELECT id FROM city.drone_detection
                    WHERE (state = 'queued' OR (state = 'running' AND heartbeat_at < now() - interval '{STALE_AFTER}'))
                      AND (%(id)s::bigint IS NULL OR id = %(id)s)
                    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id""", {"id": job_id}).fetchone()
    return row["id"] if row else None


def run(conn: psycopg.Connection, settings: Settings, job_id: int, *, stop: threading.Event | None = None,
        on_progress: Callable[[float], None] | None = None) -> dict:
    """Run a claimed job to its end; every outcome, failure included, is written to its row.

    `conn` must be in autocommit mode. Setting `stop` hands the job back to the queue."""
    job = get(conn, job_id)
    cancel = threading.Event()
    beat = _Heartbeat(conn, job_id, cancel, stop, on_progress)
    files = {row["id"]: row["file_path"] for row in conn.execute(
        "SELECT id, file_path FROM city.orthophoto WHERE id = ANY(%s)",
        [[job[k] for k, _ in INPUT_KINDS if job[k] is not None]])}
    staging = managed_dir(settings) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    raw_change_map = staging / f"detection-{job_id}-{uuid.uuid4().hex}.tif"
    try:
        result = detect_changes(files[job["before_id"]], files[job["after_id"]], files.get(job["before_dsm_id"]),
                                files.get(job["after_dsm_id"]), change_map_path=raw_change_map,
                                progress=beat.blocks_done, cancel=cancel)
        beat.report(BLOCKS_END, force=True)
        candidates = [{"geometry": transform_geom(result.crs, "EPSG:4490", mapping(c.geometry)), "score": c.score,
                       "height_gain_m": c.mean_height_gain_m, "checks_passed": c.checks_passed}
                      for c in result.candidates]
        with staged_cog(settings, raw_change_map, "change") as cog, conn.transaction():
            change_map = cog.catalogue(conn, name=f"change map of detection {job_id}",
                                       captured_on=_captured_on(conn, job["after_id"]))
            counts = queue_candidates(conn, job, candidates)
            conn.execute(
                "UPDATE city.drone_detection SET state = 'succeeded', progress = 1, finished_at = now(), "
                "residual_px = %(residual)s, registration = %(registration)s, change_map_id = %(map)s, candidates_found = %(candidates_found)s, "
                "candidates_queued = %(candidates_queued)s, dropped_registered = %(dropped_registered)s, "
                "dropped_known_illegal = %(dropped_known_illegal)s, dropped_dismissed = %(dropped_dismissed)s, "
                "dropped_already_queued = %(dropped_already_queued)s, dropped_outside_city = %(dropped_outside_city)s "
                "WHERE id = %(id)s",
                {"residual": result.registration.residual_px, "registration": Jsonb(result.figures()), "map": change_map["id"], "id": job_id,
                 **counts.as_columns()})
        if on_progress:
            on_progress(1.0)
    except CancelledError as exc:
        if stop is not None and stop.is_set():
            _finish(conn, job_id, "queued", None, requeue=True)
        else:
            _finish(conn, job_id, "cancelled", str(exc))
    except CityOpsError as exc:
        _finish(conn, job_id, "failed", str(exc))
    except Exception as exc:  # a bug or an I/O failure: the row must still say the job ended
        log.exception("change-detection job %s failed", job_id)
        _finish(conn, job_id, "failed", f"internal error: {type(exc).__name__}: {exc}")
    finally:
        raw_change_map.unlink(missing_ok=True)
    return get(conn, job_id)


def _finish(conn: psycopg.Connection, job_id: int, state: str, error: str | None, *, requeue: bool = False) -> None:
    conn.execute("UPDATE city.drone_detection SET state = %s, error = %s, "
                 "finished_at = CASE WHEN %s THEN NULL ELSE now() END, "
                 "progress = CASE WHEN %s THEN 0 ELSE progress END WHERE id = %s",
                 [state, error, requeue, requeue, job_id])


def _captured_on(conn: psycopg.Connection, orthophoto_id: int):
    return conn.execute("SELECT captured_on FROM city.orthophoto WHERE id = %s", [orthophoto_id]).fetchone()["captured_on"]


class _Heartbeat:
    """Writes progress into the job row (throttled) and picks up a cancel request on the way back."""

    def __init__(self, conn, job_id, cancel: threading.Event, stop: threading.Event | None, on_progress):
        self.conn, self.job_id, self.cancel, self.stop, self.on_progress = conn, job_id, cancel, stop, on_progress
        self.last = 0.0

    def blocks_done(self, done: int, total: int) -> None:
        self.report(BLOCKS_START + (BLOCKS_END - BLOCKS_START) * done / total, force=done == total)

    def report(self, progress: float, *, force: bool = False) -> None:
        if self.on_progress:
            self.on_progress(progress)
        if self.stop is not None and self.stop.is_set():
            self.cancel.set()
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        row = self.conn.execute("UPDATE city.drone_detection SET progress = %s, heartbeat_at = now() WHERE id = %s "
                                "RETURNING cancel_requested", [progress, self.job_id]).fetchone()
        if row["cancel_requested"]:
            self.cancel.set()


class DetectionWorker(threading.Thread):
    """Runs queued jobs one at a time (detection already uses both cores) until stopped."""

    def __init__(self, conninfo: str, settings: Settings):
        super().__init__(name="drone-detection-worker", daemon=True)
        self.conninfo, self.settings = conninfo, settings
        self.stopping, self.woken = threading.Event(), threading.Event()

    def wake(self) -> None:
        self.woken.set()

    def stop(self, timeout: float = 30) -> None:
        self.stopping.set()
        self.woken.set()
        self.join(timeout)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with open_connection(self.conninfo, autocommit=True) as conn:
                    while not self.stopping.is_set():
                        job_id = claim(conn)
                        if job_id is None:
                            self.woken.wait(POLL_S)
                            self.woken.clear()
                            continue
                        run(conn, self.settings, job_id, stop=self.stopping)
            except (CityOpsError, psycopg.Error):
                log.exception("detection worker lost its database connection; retrying")
                self.stopping.wait(5 * POLL_S)

