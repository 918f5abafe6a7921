"""Imports as background jobs (upload → 202 + job, poll its state), exports streamed (GET) or run as
background jobs for large layers (POST → 202 + job, poll, download the file once it has succeeded)."""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import Connection, SyncConnection, get_sync_connection, require
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from gis.db import open_connection
from gis.errors import Forbidden, InvalidInput, NotFound
from gis.keys import Principal
from layers.export import FORMATS, csv_chunks, export_to_file, geojson_chunks, make_request
from layers import export_jobs
from layers.importer import ImportOptions
from gis import jobs
from layers.importer.jobs import JOB_SQL, KIND, payload, uploads_dir
from layers.importer.mapping import SHIPPED, parse_field_maps
from layers.importer.source import open_source

UPLOAD_CHUNK = 1 << 20
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


async def _save_upload(upload: UploadFile, folder: Path) -> Path:
    name = SAFE_NAME.sub("_", Path(upload.filename or "upload").name).lstrip(".") or "upload"
    path = folder / name
    with open(path, "wb") as out:
        while chunk := await upload.read(UPLOAD_CHUNK):
            out.write(chunk)
    return path


def _job_body(row: dict) -> dict:
    return {**row, "links": [{"rel": "self", "href": f"/imports/{row['id']}", "type": "application/json"}]}


def _export_job_body(row: dict) -> dict:
    """The job row as the API shows it: no server paths, a link to the file once it is there."""
    links = [{"rel": "self", "href": f"/exports/jobs/{row['id']}", "type": "application/json"}]
    if row["state"] == "succeeded":
        links.append({"rel": "enclosure", "href": f"/exports/jobs/{row['id']}/file", "title": row["payload"]["filename"]})
    payload = {k: v for k, v in row["payload"].items() if k not in ("output", "api_key_id")}
    result = {k: v for k, v in (row["result"] or {}).items() if k != "path"} or None
    return {**{k: v for k, v in row.items() if k not in ("payload", "result", "worker")}, "export": payload,
            "result": result, "links": links}


def transfer_extension() -> Extension:
    router = APIRouter(tags=["Import and export"], route_class=KeyFirstRoute)

    @router.post("/imports", status_code=202, summary="Upload a GIS file to import into a layer (background job)")
    async def post_import(
        request: Request, conn: Connection, principal: Annotated[Principal, Depends(require("editor"))],
        file: Annotated[UploadFile, File(description="Shapefile .zip, GeoPackage, GeoJSON, FlatGeobuf, CSV or OSM PBF")],
        layer: Annotated[str | None, Form()] = None, crs: Annotated[str | None, Form()] = None,
        mode: Annotated[Literal["append", "replace", "upsert"], Form()] = "append", key: Annotated[str | None, Form()] = None,
        mapping: Annotated[str | None, Form(description="a shipped mapping: " + ", ".join(p.stem for p in SHIPPED.glob("*.yaml")))] = None,
        district: Annotated[str | None, Form()] = None, class_code: Annotated[str | None, Form(alias="class")] = None,
        where: Annotated[str | None, Form()] = None, map: Annotated[list[str], Form()] = [],  # noqa: A002 - the CLI's --map
        max_rejects: Annotated[int | None, Form()] = None, dry_run: Annotated[bool, Form()] = False,
    ):
        if principal.districts:
            raise Forbidden("an import may touch any district; use a key without a district scope")
        if mapping and not (SHIPPED / f"{mapping}.yaml").is_file():
            raise InvalidInput(f"unknown mapping {mapping!r}; shipped mappings: {', '.join(p.stem for p in SHIPPED.glob('*.yaml'))}")
        options = ImportOptions(layer=layer, crs=crs, field_map=parse_field_maps(map), mode=mode, key=key, mapping=mapping,
                                district=district, class_code=class_code, where=where, max_rejects=max_rejects, dry_run=dry_run)
        if layer:
            request.app.state.catalogue.get(layer)
        uploads = uploads_dir(request.app.state.settings)
        uploads.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{uuid.uuid4().hex[:8]}-", dir=uploads))
        path = await _save_upload(file, folder)
        try:
            await run_in_threadpool(open_source, path, [], None)  # an unreadable file is a 400 now, not a failed job later
        except InvalidInput:
            await run_in_threadpool(shutil.rmtree, folder, True)
            raise
        row = await (await conn.execute(jobs.SUBMIT_SQL, jobs.submit_params(
            KIND, payload(path, options, owned=True, api_key_id=principal.key_id), principal.name))).fetchone()
        request.app.state.workers.wake()
        job = await (await conn.execute(JOB_SQL, [row["id"]])).fetchone()
        return JSONResponse(_job_body(job) | {"created_at": job["created_at"].isoformat()}, status_code=202,
                            headers={"Location": f"/imports/{row['id']}"})

    @router.get("/imports/{job_id}", summary="State, progress and report of an import job")
    async def get_import(job_id: int, conn: Connection, _: Annotated[Principal, Depends(require("viewer"))]):
        job = await (await conn.execute(JOB_SQL, [job_id])).fetchone()
        if job is None:
            raise NotFound(f"no import job {job_id}")
        return _job_body(job)

    @router.post("/imports/{job_id}/cancel", summary="Cancel an import job (a running one rolls back)")
    def cancel_import(job_id: int, conn: SyncConnection,
                      _: Annotated[Principal, Depends(require("editor", connection=get_sync_connection))]):
        jobs.cancel(conn, job_id, KIND, what="import job")
        return _job_body(conn.execute(JOB_SQL, [job_id]).fetchone())

    @router.get("/exports/{layer_id}.{ext}", summary="Download a layer (gpkg, shp, fgb, geojson, csv), streamed")
    async def get_export(request: Request, layer_id: str, ext: str, bbox: str | None = None, crs: str | None = None):
        export = make_request(request.app.state.catalogue.get(layer_id), ext, bbox, crs)
        info = request.app.state.pool.conninfo
        filename = f"{layer_id}{export.spec.extension}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if export.spec.driver is None:
            chunks = geojson_chunks if ext == "geojson" else csv_chunks

            def stream():
                with open_connection(info) as conn:
                    yield from chunks(conn, export, lambda _: None)
            return StreamingResponse(stream(), media_type=export.spec.media_type, headers=headers)
        folder = Path(tempfile.mkdtemp(prefix="cityops-export-"))

        def write() -> Path:
            with open_connection(info) as conn:
                return export_to_file(conn, export, folder / filename)
        path = await run_in_threadpool(write)
        return FileResponse(path, media_type=export.spec.media_type, filename=filename,
                            background=BackgroundTask(shutil.rmtree, folder, True))

    @router.post("/exports/{layer_id}.{ext}", status_code=202,
                 summary="Export a layer as a background job (large layers): poll it, then download its file")
    def post_export(request: Request, layer_id: str, ext: str, conn: SyncConnection,
                    principal: Annotated[Principal, Depends(require("viewer", connection=get_sync_connection))],
                    bbox: str | None = None, crs: str | None = None):
        row = export_jobs.submit(conn, layer_id, ext, bbox=bbox, crs=crs, created_by=principal.name,
                                 api_key_id=principal.key_id)
        request.app.state.workers.wake()
        return JSONResponse(jsonable_encoder(_export_job_body(row)), status_code=202,
                            headers={"Location": f"/exports/jobs/{row['id']}"})

    @router.get("/exports/jobs/{job_id}", summary="State and progress of an export job")
    def get_export_job(job_id: int, conn: SyncConnection,
                       _: Annotated[Principal, Depends(require("viewer", connection=get_sync_connection))]):
        return _export_job_body(export_jobs.get(conn, job_id))

    @router.get("/exports/jobs/{job_id}/file", summary="The file of a succeeded export job")
    def get_export_file(request: Request, job_id: int, conn: SyncConnection,
                        _: Annotated[Principal, Depends(require("viewer", connection=get_sync_connection))]):
        row = export_jobs.get(conn, job_id)
        path = export_jobs.finished_file(row, request.app.state.settings)
        return FileResponse(path, media_type=FORMATS[row["payload"]["format"]].media_type, filename=path.name)

    @router.post("/exports/jobs/{job_id}/cancel", summary="Cancel an export job (a running one removes its partial file)")
    def cancel_export(job_id: int, conn: SyncConnection,
                      principal: Annotated[Principal, Depends(require("viewer", connection=get_sync_connection))]):
        if export_jobs.get(conn, job_id)["payload"].get("api_key_id") != principal.key_id:
            raise Forbidden(f"export job {job_id} was started with another key; only that key may cancel it")
        jobs.cancel(conn, job_id, export_jobs.KIND, what=export_jobs.WHAT)
        return _export_job_body(export_jobs.get(conn, job_id))

    return Extension(router=router, links=({"rel": "data", "href": "/exports/{layer}.{" + ",".join(FORMATS) + "}",
                                            "title": "layer downloads", "templated": True},))
