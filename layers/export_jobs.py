"""Exports as a kind of job of the one job system (`gis.jobs`, table `city.job`).

A job writes its layer to a partial file next to its target and renames it into place when the last
row is written, so a target is either absent or whole. The API's exports land in the state folder
(`exports/<job id>/`) and are downloadable until `CITYOPS_EXPORT_KEEP_HOURS` have passed; the
CLI's land where the user asked. A job whose worker died leaves only its partial file, which the
job system removes before the next worker writes the file again from the start.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from gis import jobs
from gis.db import open_connection
from gis.errors import Conflict, NotFound
from gis.settings import settings_of
from layers.export import count_rows, export_to_file, make_request
from layers.live import resolve
from layers.settings import ExportSettings

KIND = "export"
WHAT = "export job"
Tell = Callable[[int, int], None]  # (rows just written, rows in all)


def exports_dir(settings) -> Path:
    return settings.state_dir / "exports"


def submit(conn: psycopg.Connection, layer_id: str, fmt: str, *, bbox: str | None = None, crs: str | None = None,
           output: Path | None = None, created_by: str, api_key_id: int | None = None) -> dict:
    """Queue an export after checking the layer and the options (a bad one is refused now, not later)."""
    request = make_request(resolve(conn, layer_id), fmt, bbox, crs)
    return jobs.submit(conn, KIND, {"layer": request.layer.id, "format": request.format, "bbox": bbox, "crs": crs,
                                    "filename": f"{request.layer.id}{request.spec.extension}",
                                    "output": str(output) if output else None, "api_key_id": api_key_id}, created_by)


def target(row: dict, settings) -> Path:
    """Where the job's file lands: the CLI's `-o`, or the job's own folder in the state folder."""
    spec = row["payload"]
    return Path(spec["output"]) if spec.get("output") else exports_dir(settings) / str(row["id"]) / spec["filename"]


def run_export(job: jobs.Job, settings, tell: Tell | None = None) -> dict:
    spec = job.payload
    final = target(job.row, settings)
    with open_connection(job.conninfo, autocommit=True) as conn:
        request = make_request(resolve(conn, spec["layer"]), spec["format"], spec.get("bbox"), spec.get("crs"))
        total = count_rows(conn, request)
        written = [0]

        def progress(rows: int) -> None:
            written[0] += rows
            if tell:
                tell(rows, total)
            job.progress(written[0] / total if total else None, done=written[0], total=total, phase="writing")

        job.progress(0.0, done=0, total=total, phase="writing", force=True)
        with jobs.written_whole(job.id, final) as partial:
            export_to_file(conn, request, partial, progress)
    return {"features": total, "bytes": final.stat().st_size, "filename": final.name, "path": str(final)}


def _scratch(row: dict, settings) -> list[Path]:
    return jobs.partial_files(row["id"], target(row, settings))


def _orphans(open_rows: list[dict], settings) -> list[Path]:
    """Job folders of the state folder that no open job writes and that are older than the keep time."""
    folder = exports_dir(settings)
    writing = {str(row["id"]) for row in open_rows}
    cutoff = time.time() - settings_of(ExportSettings).export_keep_hours * 3600
    return [path for path in folder.iterdir() if path.name not in writing and path.stat().st_mtime < cutoff] \
        if folder.is_dir() else []


EXPORT = jobs.JobKind(KIND, run_export, max_running=1, scratch=_scratch, orphans=_orphans)


def get(conn: psycopg.Connection, job_id: int) -> dict:
    row = jobs.get(conn, job_id, KIND)
    if row is None:
        raise NotFound(f"no {WHAT} with id {job_id}")
    return row


def finished_file(row: dict, settings) -> Path:
    """The file a succeeded API export wrote (a 409 while it runs, a 404 once swept); a CLI export's
    file is the user's, never served."""
    if row["payload"].get("output"):
        raise NotFound(f"export job {row['id']} wrote a file for the command line; only API exports are served")
    if row["state"] != "succeeded":
        raise Conflict(f"export job {row['id']} is {row['state']}; its file is ready once it has succeeded")
    path = target(row, settings)
    if not path.is_file():
        kept = settings_of(ExportSettings).export_keep_hours
        raise NotFound(f"the file of export job {row['id']} is gone (files are kept {kept:g} hours)")
    return path


def export_here(conninfo: str, settings, layer_id: str, fmt: str, *, bbox: str | None, crs: str | None, output: Path,
                created_by: str, tell: Tell | None = None) -> dict:
    """Export as a job run in this process (the CLI): the ended job row."""
    kind = dataclasses.replace(EXPORT, run=lambda job, s: run_export(job, s, tell))
    return jobs.run_here(conninfo, kind, settings, lambda conn: submit(conn, layer_id, fmt, bbox=bbox, crs=crs,
                                                                        output=output.resolve(), created_by=created_by))
