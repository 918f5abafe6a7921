"""Change-detection jobs and the review queue (orthophotos themselves: api/routers/orthophotos.py).

The drone functions are synchronous (the CLI calls the same ones), so these routes are plain
`def`s run in the threadpool over the app's small synchronous pool (`SyncConnection`), and the
key is checked on that same connection; the detection worker is started with the app's services.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import SyncConnection, get_sync_connection, optional_key, require
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from drone import jobs, review
from gis.keys import Principal
from tiles.raster import media_type, tile_format


Conn = SyncConnection
Enforcement = Annotated[Principal, Depends(require("enforcement", connection=get_sync_connection))]
Reviewer = Annotated[Principal, Depends(require("reviewer", connection=get_sync_connection))]
# who reviewed or started what, and reviewers' free-text notes (which have held phone numbers):
# shown only to callers with a key
PRIVATE_FIELDS = ("reviewer", "note", "created_by")


KeyHolder = Annotated[Principal | None, Depends(optional_key(connection=get_sync_connection))]


def _public(document: dict, principal: Principal | None) -> dict:
    """The document as an anonymous caller may see it: private fields left out, in features too."""
    if principal is not None:
        return document
    shown = {k: v for k, v in document.items() if k not in PRIVATE_FIELDS}
    if isinstance(shown.get("properties"), dict):
        shown["properties"] = {k: v for k, v in shown["properties"].items() if k not in PRIVATE_FIELDS}
    if isinstance(shown.get("features"), list):
        shown["features"] = [_public(feature, None) for feature in shown["features"]]
    return shown


class NewDetection(BaseModel):
    before_id: int = Field(description="orthophoto id (kind rgb) of the earlier flight")
    after_id: int = Field(description="orthophoto id (kind rgb) of the later flight")
    before_dsm_id: int | None = Field(default=None, description="DSM id (kind dsm) of the earlier flight")
    after_dsm_id: int | None = Field(default=None, description="DSM id (kind dsm) of the later flight")


class Decision(BaseModel):
    note: str | None = Field(default=None, max_length=2000, description="why; kept with the decision")


def drone_extension() -> Extension:
    router = APIRouter(route_class=KeyFirstRoute)

    @router.post("/drone/detections", tags=["Drone change detection"], status_code=202,
                 summary="Start a change-detection job between two flights")
    def start_detection(request: Request, response: Response, conn: Conn, principal: Enforcement, body: NewDetection):
        job = jobs.submit(conn, **body.model_dump(), created_by=principal.name)
        request.app.state.workers.wake()
        response.headers["Location"] = str(request.url_for("get_detection", job_id=job["id"]))
        return job

    @router.get("/drone/detections/{job_id}", tags=["Drone change detection"], summary="A job's state and progress")
    def get_detection(conn: Conn, job_id: int, principal: KeyHolder):
        return _public(jobs.get(conn, job_id), principal)

    @router.post("/drone/detections/{job_id}/cancel", tags=["Drone change detection"], summary="Cancel a job")
    def cancel_detection(conn: Conn, principal: Enforcement, job_id: int):
        return jobs.cancel(conn, job_id)

    router.add_api_route("/drone/detections/{job_id}", cancel_detection, methods=["DELETE"],
                         tags=["Drone change detection"], summary="Cancel a job", name="delete_detection")

    @router.get("/drone/detections/{job_id}/after/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}",
                tags=["Drone review"], response_class=Response,
                summary="A tile of the detection's after orthophoto moved to where registration put it: the review "
                        "desk's after view, at the same place as the before orthophoto",
                responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
                           404: {"description": "no such finished detection, or a tile outside the after orthophoto"}})
    def registered_after_tile(request: Request, conn: Conn, job_id: int, tileMatrixSetId: str, z: int, x: int, y: int,
                              format: str):
        fmt = tile_format(format)
        path, band_count, correction = jobs.registered_after(conn, job_id)
        data = request.app.state.raster_tiles.registered_tile(path, band_count, correction, tileMatrixSetId, z, x, y, fmt)
        return Response(data, media_type=media_type(fmt), headers={"Cache-Control": "public, max-age=3600"})

    @router.get("/drone/candidates", tags=["Drone review"], summary="Change candidates (GeoJSON), best first")
    def list_candidates(conn: Conn, status: Literal["pending", "confirmed", "dismissed"] | None = "pending",
                        detection_id: int | None = None, district_code: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000, principal: KeyHolder = None):
        return _public(review.list_candidates(conn, status=status, detection_id=detection_id,
                                              district_code=district_code, limit=limit), principal)

    @router.get("/drone/candidates/{candidate_id}", tags=["Drone review"], summary="One change candidate")
    def get_candidate(conn: Conn, candidate_id: int, principal: KeyHolder):
        return _public(review.get_candidate(conn, candidate_id), principal)

    @router.post("/drone/candidates/{candidate_id}/confirm", tags=["Drone review"],
                 summary="Confirm: record an illegal building (reviewer role, own districts)")
    def confirm_candidate(conn: Conn, principal: Reviewer, candidate_id: int, body: Decision):
        return review.decide(conn, principal, candidate_id, "confirm", body.note)

    @router.post("/drone/candidates/{candidate_id}/dismiss", tags=["Drone review"],
                 summary="Dismiss: not an illegal building; not queued again by later flights")
    def dismiss_candidate(conn: Conn, principal: Reviewer, candidate_id: int, body: Decision):
        return review.decide(conn, principal, candidate_id, "dismiss", body.note)

    return Extension(router=router)

