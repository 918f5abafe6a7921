"""Imports as a kind of job of the one job system (`gis.jobs`, table `city.job`; read back through
the view `city.import_job`).

The import runs in one transaction on a connection of its own, and the job's success is written in
that same transaction, so a job is never `succeeded` without its rows nor its rows there without
the job; progress goes through the job's autocommit connection, so any process polling it sees it
move while nothing of the import is visible yet. A job whose worker died left nothing behind and
runs again from its file.

An import runs at most `CITYOPS_IMPORT_MAX_S`: then the statement it is running is cancelled (or
it stops at its next progress report), its transaction rolls back and the job fails with the
reason, which frees its worker for the next job.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from gis import jobs
from gis.db import open_connection
from gis.errors import CityOpsError
from gis.limits import LimitSettings
from gis.settings import settings_of
from layers.importer.run import ImportOptions, ImportReport, import_file

log = logging.getLogger("cityops.imports")

KIND = "import"
JOB_SQL = ("SELECT id, file_name, options, rows_done, rows_total, phase, report, created_at, finished_at, state, error "
           "FROM city.import_job WHERE id = %s")
Tell = Callable[[str, int, int], None]
# An upload has no job until it is whole and its file has been opened once (a large archive takes a while).
ORPHAN_AFTER_S = 600


class ImportFailed(CityOpsError):
    pass


class ImportTimedOut(ImportFailed):
    pass


class Deadline:
    """Stops an import at its wall-time limit: cancels the statement its connection is running and
    makes its next progress report raise."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self.expired = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._timer = threading.Timer(limit_s, self._expire)
        self._timer.daemon = True

    def watch(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._timer.start()

    def _expire(self) -> None:
        self.expired.set()
        if self._conn is not None and not self._conn.closed:
            self._conn.cancel_safe(timeout=10)

    def check(self) -> None:
        if self.expired.is_set():
            raise self.error()

    def error(self) -> ImportTimedOut:
        return ImportTimedOut(f"the import ran longer than {self.limit_s:g} s, the limit (CITYOPS_IMPORT_MAX_S); "
                              "it was stopped and nothing was imported")

    def stop(self) -> None:
        self._timer.cancel()


def payload(path: Path, options: ImportOptions, *, owned: bool, api_key_id: int | None = None) -> dict:
    """What a job needs to run: the file (`owned`: an upload the job removes once it has ended)."""
    return {"file_name": path.name, "path": str(path), "owned": owned, "options": dataclasses.asdict(options),
            "api_key_id": api_key_id}


def run_import(job: jobs.Job, settings: object, tell: Tell | None = None) -> dict | None:
    options = ImportOptions(**job.payload["options"])
    read = [0]
    deadline = Deadline(settings_of(LimitSettings).import_max_s)

    def progress(phase: str, done: int, total: int) -> None:
        deadline.check()
        if tell:
            tell(phase, done, total)
        read[0] += done if phase == "read" else 0
        job.progress(done=read[0], total=total if phase == "read" and total else None, phase=phase, force=phase != "read")

    try:
        with open_connection(job.conninfo) as conn:
            deadline.watch(conn)
            report = import_file(conn, Path(job.payload["path"]), options, progress)
            deadline.check()  # the last statement may have ended just as it was cancelled
            if options.dry_run:
                conn.rollback()
                return {"report": report.as_dict()}
            job.succeed(conn, {"report": report.as_dict()}, done=report.read, phase="done")
            conn.commit()
            return None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the connection's transaction has been rolled back here
        if deadline.expired.is_set():
            raise deadline.error() from None
        if isinstance(exc, CityOpsError):
            raise
        log.exception("import job %s failed", job.id)  # the traceback goes to the server log
        raise ImportFailed("internal error while importing; nothing was imported (see the server log)") from None
    finally:
        deadline.stop()


def uploads_dir(settings) -> Path:
    return settings.state_dir / "imports"


def _owned(row: dict, settings: object) -> list[Path]:
    spec = row["payload"]
    return [Path(spec["path"]).parent] if spec.get("owned") else []


def _last_written(upload: Path) -> float:
    """When an upload folder or a file in it was last written: a file's time moves with every chunk
    received, the folder's only when a file is added."""
    return max(p.stat().st_mtime for p in (upload, *(upload.iterdir() if upload.is_dir() else ())))


def _orphans(open_rows: list[dict], settings) -> list[Path]:
    """Upload folders no open job reads and nothing was written to for ORPHAN_AFTER_S (an upload being
    received or checked has no job yet, however long it takes: the workers sweep every CITYOPS_JOB_SWEEP_S)."""
    kept = {Path(row["payload"]["path"]).parent for row in open_rows if row["payload"].get("owned")}
    folder = uploads_dir(settings)
    cutoff = time.time() - ORPHAN_AFTER_S
    return [p for p in folder.iterdir() if p not in kept and _last_written(p) < cutoff] if folder.is_dir() else []


# two at a time: one long import leaves a worker for the next upload
IMPORT = jobs.JobKind(KIND, run_import, max_running=2, owned=_owned, orphans=_orphans)


def import_here(conninfo: str, settings: object, path: Path, options: ImportOptions, created_by: str,
                tell: Tell | None = None) -> tuple[dict, ImportReport | None]:
    """Import `path` as a job run in this process (the CLI): (the job row, its report)."""
    kind = dataclasses.replace(IMPORT, run=lambda job, s: run_import(job, s, tell))
    row = jobs.run_here(conninfo, kind, settings,
                        lambda conn: jobs.submit(conn, KIND, payload(path, options, owned=False), created_by))
    report = (row["result"] or {}).get("report")
    return row, ImportReport(**report) if report else None
