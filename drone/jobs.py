"""Change detection as a kind of job of the one job system (`gis.jobs`, table `city.job`; read
back through the view `city.drone_detection`).

Any process can submit, poll or cancel; whichever worker claims a job runs it, and a job whose
worker died is queued again. The job's success, its change map and its candidates commit together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from affine import Affine
from rasterio.warp import transform_geom
from shapely.geometry import mapping

from drone.errors import CancelledError, NoOverlapError
from drone.ingest import CATALOGUE_CRS, managed_dir, staged_cog
from drone.pipeline import detect_changes
from drone.review import queue_candidates
from gis import jobs, orthophotos
from gis.db import open_connection
from gis.errors import InvalidInput, NotFound
from gis.settings import Settings

log = logging.getLogger("cityops.drone.jobs")

KIND = "detection"
WHAT = "change-detection job"
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
            row = orthophotos.find(conn, [ids[field]]).get(ids[field])
            if row is None:
                raise NotFound(f"{field}: no orthophoto with id {ids[field]}")
            if row["kind"] != kind:
                raise InvalidInput(f"{field}: orthophoto {ids[field]} is a {row['kind']} raster, not {kind}")
        if not orthophotos.overlap(conn, before_id, after_id):
            raise NoOverlapError(f"orthophotos {before_id} and {after_id} do not overlap")
        job = jobs.submit(conn, KIND, ids, created_by)
        return get(conn, job["id"])


def get(conn: psycopg.Connection, job_id: int) -> dict:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM city.drone_detection WHERE id = %s", [job_id]).fetchone()
    if row is None:
        raise NotFound(f"no {WHAT} with id {job_id}")
    return row


def registered_after(conn: psycopg.Connection, job_id: int) -> tuple[str, int, Affine]:
    """The after orthophoto of a finished detection (analysis COG path, band count) and the world affine that
    registration found to put it onto the before orthophoto."""
    job = get(conn, job_id)
    correction = (job["registration"] or {}).get("correction")
    if job["state"] != "succeeded" or correction is None:
        raise NotFound(f"detection {job_id} is {job['state']}" + (
            "" if job["state"] != "succeeded" else " but ran before registrations were kept: run it again")
            + "; only a finished detection has a registered after orthophoto")
    after = orthophotos.find(conn, [job["after_id"]]).get(job["after_id"])
    if after is None:
        raise NotFound(f"the after orthophoto {job['after_id']} of detection {job_id} has been deleted")
    return after["file_path"], after["band_count"], Affine(*correction)


def cancel(conn: psycopg.Connection, job_id: int) -> dict:
    """A queued job is cancelled at once; a running one stops at its next block."""
    jobs.cancel(conn, job_id, KIND, what=WHAT)
    return get(conn, job_id)


def _run(job: jobs.Job, settings: Settings) -> None:
    conn, spec = job.conn, job.payload
    files = {row_id: row["file_path"] for row_id, row in orthophotos.find(
        conn, [spec[k] for k, _ in INPUT_KINDS if spec.get(k) is not None]).items()}
    staging = managed_dir(settings) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    raw_change_map = staging / f"{staging_prefix(job.id)}{uuid.uuid4().hex}.tif"

    def blocks_done(done: int, total: int) -> None:
        job.progress(BLOCKS_START + (BLOCKS_END - BLOCKS_START) * done / total, force=done == total, check_cancel=False)

    try:
        try:
            result = detect_changes(files[spec["before_id"]], files[spec["after_id"]], files.get(spec.get("before_dsm_id")),
                                    files.get(spec.get("after_dsm_id")), change_map_path=raw_change_map,
                                    progress=blocks_done, cancel=job.cancel)
        except CancelledError as exc:
            raise jobs.JobCancelled(str(exc)) from None
        job.progress(BLOCKS_END, force=True)
        candidates = [{"geometry": transform_geom(result.crs, CATALOGUE_CRS, mapping(c.geometry)), "score": c.score,
                       "height_gain_m": c.mean_height_gain_m, "checks_passed": c.checks_passed}
                      for c in result.candidates]
        with staged_cog(settings, raw_change_map, "change", prefix=staging_prefix(job.id)) as cog, conn.transaction():
            change_map = cog.catalogue(conn, name=f"change map of detection {job.id}",
                                       captured_on=orthophotos.flight_day(conn, spec["after_id"]))
            counts = queue_candidates(conn, {"id": job.id, **spec}, candidates)
            job.succeed(conn, {"residual_px": result.registration.residual_px, "registration": result.figures(),
                               "change_map_id": change_map["id"], **counts.as_columns()})
    finally:
        raw_change_map.unlink(missing_ok=True)


def staging_prefix(job_id: int) -> str:
    """How the staging files of a detection job begin: its raw change map and the change map's two COGs."""
    return f"{KIND}-{job_id}-"


def _scratch(row: dict, settings: Settings) -> list[Path]:
    return list((managed_dir(settings) / ".staging").glob(f"{staging_prefix(row['id'])}*.tif"))


def _orphans(open_rows: list[dict], settings: Settings) -> list[Path]:
    running = {row["id"] for row in open_rows}
    return [path for path in (managed_dir(settings) / ".staging").glob(f"{KIND}-*.tif")
            if not path.name.split("-")[1].isdigit() or int(path.name.split("-")[1]) not in running]


DETECTION = jobs.JobKind(KIND, _run, max_running=1, scratch=_scratch, orphans=_orphans)


def detect_here(conninfo: str, settings: Settings, *, created_by: str, on_progress: Callable[[float], None] | None = None,
                **inputs: int | None) -> dict:
    """Submit a detection and run it in this process (the CLI); the outcome as `get` reads it."""
    row = jobs.run_here(conninfo, DETECTION, settings, lambda conn: submit(conn, **inputs, created_by=created_by),
                        on_progress=(lambda job: on_progress(job.row["progress"] or 0.0)) if on_progress else None)
    with open_connection(conninfo, autocommit=True) as conn:
        return get(conn, row["id"])
