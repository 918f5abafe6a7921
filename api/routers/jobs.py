"""Every background job of every kind, as `cityops jobs list | cancel` shows them, for administrators:
the newest jobs, one job, and cancelling one. Each kind keeps its own routes for its users too
(`/imports/…`, `/exports/jobs/…`, `/drone/detections/…`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import SyncConnection, get_sync_connection, require
from api.extension import Extension
from api.job_kinds import JOB_KINDS
from api.key_gate import KeyFirstRoute
from gis import jobs
from gis.errors import InvalidInput, NotFound
from gis.keys import Principal

KIND_NAMES = tuple(kind.name for kind in JOB_KINDS)
Admin = Annotated[Principal, Depends(require("admin", connection=get_sync_connection))]


def jobs_extension() -> Extension:
    router = APIRouter(tags=["Background jobs"], route_class=KeyFirstRoute)

    @router.get("/jobs", summary="The newest background jobs of every kind (or of one), with state and progress")
    def list_jobs(conn: SyncConnection, _: Admin,
                  kind: Annotated[str | None, Query(description=" | ".join(KIND_NAMES))] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50):
        if kind is not None and kind not in KIND_NAMES:
            raise InvalidInput(f"unknown job kind {kind!r}; kinds: {', '.join(KIND_NAMES)}")
        return {"jobs": jobs.list_jobs(conn, kind=kind, limit=limit)}

    @router.get("/jobs/{job_id}", summary="One background job")
    def get_job(job_id: int, conn: SyncConnection, _: Admin):
        row = jobs.get(conn, job_id)
        if row is None:
            raise NotFound(f"no job with id {job_id}")
        return row

    @router.post("/jobs/{job_id}/cancel", summary="Cancel a job: a queued one at once, a running one at its next progress report")
    def cancel_job(job_id: int, conn: SyncConnection, _: Admin):
        return jobs.cancel(conn, job_id)

    return Extension(router=router)
