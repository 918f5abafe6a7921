"""Orthophotos (upload, catalogue, titiler raster tiles), change-detection jobs and the review queue.

The drone functions are synchronous (the CLI calls the same ones), so these routes are plain
`def`s run in the threadpool over a small synchronous pool; the detection worker thread lives
as long as the app.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import psycopg
from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, Query, Request, Response, UploadFile
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from api.deps import get_principal, require
from api.extension import Extension
from drone import jobs, review
from drone.ingest import ORTHOPHOTO_COLUMNS, ingest_orthophoto, managed_dir
from gis.errors import NotFound
from gis.keys import Principal
from tiles.raster import orthophoto_tiler

TILER_PREFIX = "/orthophotos/{orthophoto_id}"
TILE_TEMPLATE = "/orthophotos/{id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
TILEJSON = "/orthophotos/{id}/WebMercatorQuad/tilejson.json"


@asynccontextmanager
async def _lifespan(app: FastAPI):
    pool = ConnectionPool(app.state.pool.conninfo, min_size=1, max_size=4, open=False,
                          kwargs={"row_factory": dict_row, "autocommit": True})
    await to_thread.run_sync(lambda: pool.open(wait=True, timeout=30))
    worker = jobs.DetectionWorker(app.state.pool.conninfo, app.state.settings)
    worker.start()
    app.state.drone_pool, app.state.drone_worker = pool, worker
    try:
        yield
    finally:
        await to_thread.run_sync(worker.stop)
        await to_thread.run_sync(pool.close)


def _connection(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.drone_pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.Connection, Depends(_connection)]
Enforcement = Annotated[Principal, Depends(require("enforcement"))]
Reviewer = Annotated[Principal, Depends(require("reviewer"))]
# who reviewed or started what, and reviewers' free-text notes (which have held phone numbers):
# shown only to callers with a key
PRIVATE_FIELDS = ("reviewer", "note", "created_by")


async def _optional_principal(request: Request, authorization: Annotated[str | None, Header()] = None
                              ) -> Principal | None:
    return None if authorization is None else await get_principal(request.app.state.pool, authorization)


KeyHolder = Annotated[Principal | None, Depends(_optional_principal)]


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


def _orthophoto_feature(request: Request, row: dict) -> dict:
    base = str(request.base_url).rstrip("/")
    properties = {k: v for k, v in row.items() if k not in ("id", "footprint", "file_path")}
    return {"type": "Feature", "id": row["id"], "geometry": row["footprint"], "properties": properties,
            "links": [{"rel": "tilejson", "type": "application/json", "href": base + TILEJSON.format(id=row["id"])},
                      {"rel": "item", "type": "image/png", "templated": True,
                       "href": base + TILE_TEMPLATE.format(id=row["id"])}]}


def drone_extension() -> Extension:
    router = APIRouter(lifespan=_lifespan)
    tiler = orthophoto_tiler(TILER_PREFIX)

    @router.get("/orthophotos", tags=["Orthophotos"], summary="Catalogue of orthophotos, DSMs and change maps")
    def list_orthophotos(request: Request, conn: Conn, kind: Literal["rgb", "dsm", "change"] | None = None):
        rows = conn.execute(f"SELECT {ORTHOPHOTO_COLUMNS} FROM city.orthophoto "
                            "WHERE %(kind)s::text IS NULL OR kind = %(kind)s ORDER BY id", {"kind": kind}).fetchall()
        return {"type": "FeatureCollection", "numberReturned": len(rows),
                "features": [_orthophoto_feature(request, r) for r in rows]}

    @router.get("/orthophotos/{orthophoto_id}", tags=["Orthophotos"], summary="One catalogue entry")
    def get_orthophoto(request: Request, conn: Conn, orthophoto_id: int):
        row = conn.execute(f"SELECT {ORTHOPHOTO_COLUMNS} FROM city.orthophoto WHERE id = %s", [orthophoto_id]).fetchone()
        if row is None:
            raise NotFound(f"no orthophoto with id {orthophoto_id}")
        return _orthophoto_feature(request, row)

    @router.post("/orthophotos", tags=["Orthophotos"], status_code=201,
                 summary="Upload a GeoTIFF: validated, converted to a COG and catalogued")
    def upload_orthophoto(request: Request, response: Response, conn: Conn, principal: Enforcement,
                          file: Annotated[UploadFile, File(description="a georeferenced raster GDAL can read")],
                          kind: Annotated[Literal["rgb", "dsm"], Form()] = "rgb",
                          captured_on: Annotated[date | None, Form()] = None,
                          name: Annotated[str | None, Form(max_length=200)] = None):
        staging = managed_dir(request.app.state.settings) / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        upload = staging / f"upload-{uuid.uuid4().hex}{Path(file.filename or '').suffix[:8]}"
        try:
            with upload.open("wb") as out:
                shutil.copyfileobj(file.file, out, 2**20)
            row = ingest_orthophoto(conn, request.app.state.settings, upload, kind=kind,
                                    name=name or file.filename or upload.name, captured_on=captured_on)
        finally:
            upload.unlink(missing_ok=True)
        response.headers["Location"] = str(request.url_for("get_orthophoto", orthophoto_id=row["id"]))
        return _orthophoto_feature(request, row)

    router.include_router(tiler.router, prefix=TILER_PREFIX, tags=["Orthophoto tiles"])

    @router.post("/drone/detections", tags=["Drone change detection"], status_code=202,
                 summary="Start a change-detection job between two flights")
    def start_detection(request: Request, response: Response, conn: Conn, principal: Enforcement, body: NewDetection):
        job = jobs.submit(conn, **body.model_dump(), created_by=principal.name)
        request.app.state.drone_worker.wake()
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

    return Extension(router=router, conformance=tuple(sorted(tiler.conforms_to)),
                     links=({"rel": "data", "type": "application/geo+json", "title": "Orthophoto catalogue",
                             "href": "/orthophotos"},))

