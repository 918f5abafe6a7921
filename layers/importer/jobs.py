"""Import jobs: a row in city.import_job per upload, run by a worker thread with its own connections.

The import itself runs in one transaction; progress goes through a second, autocommit connection,
so any process polling the job sees it move while nothing of the import is visible yet.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from gis.db import open_connection
from gis.errors import CityOpsError
from layers.importer.run import ImportOptions, import_file

log = logging.getLogger("cityops.imports")
PROGRESS_EVERY_S = 1.0
# A job whose worker has not reported for this long died with its process (a restart): say so.
STALE_AFTER = "15 minutes"

JOB_SQL = f"""
SELECT id, file_name, options, rows_done, rows_total, phase, report, created_at, finished_at,
       CASE WHEN state IN ('queued', 'running') AND updated_at < now() - interval '{STALE_AFTER}' THEN 'failed' ELSE state END AS state,
       CASE WHEN state IN ('queued', 'running') AND updated_at < now() - interval '{STALE_AFTER}'
            THEN 'the import worker stopped before finishing (server restart?); nothing was imported' ELSE error END AS error
FROM city.import_job WHERE id = %s
"""
CREATE_SQL = "INSERT INTO city.import_job (file_name, options, api_key_id) VALUES (%s, %s, %s) RETURNING id"


def options_json(options: ImportOptions) -> str:
    return json.dumps(dataclasses.asdict(options), ensure_ascii=False)


def run_job(conninfo: str, job_id: int, path: Path, options: ImportOptions) -> None:
    """Run one queued job to its end; never raises (the job row tells the outcome)."""
    with open_connection(conninfo, autocommit=True) as status:
        status.execute("UPDATE city.import_job SET state = 'running', updated_at = now() WHERE id = %s", [job_id])
        last = [0.0, 0]

        def progress(phase: str, done: int, total: int) -> None:
            last[1] += done if phase == "read" else 0
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S or phase != "read":
                last[0] = time.monotonic()
                status.execute("UPDATE city.import_job SET rows_done = %s, rows_total = nullif(%s, 0), phase = %s, "
                               "updated_at = now() WHERE id = %s", [last[1], total if phase == "read" else None, phase, job_id])
        try:
            with open_connection(conninfo) as conn:
                report = import_file(conn, path, options, progress)
                conn.rollback() if options.dry_run else conn.commit()
            status.execute("UPDATE city.import_job SET state = 'succeeded', report = %s, rows_done = %s, phase = 'done', "
                           "updated_at = now(), finished_at = now() WHERE id = %s",
                           [json.dumps(report.as_dict(), ensure_ascii=False, default=str), report.read, job_id])
        except CityOpsError as exc:
            _fail(status, job_id, str(exc))
        except Exception:  # the job row must end; the traceback goes to the server log
            log.exception("import job %s failed", job_id)
            _fail(status, job_id, "internal error while importing; nothing was imported (see the server log)")
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)


def _fail(status, job_id: int, message: str) -> None:
    status.execute("UPDATE city.import_job SET state = 'failed', error = %s, updated_at = now(), finished_at = now() "
                   "WHERE id = %s", [message, job_id])
