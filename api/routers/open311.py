"""Open311 GeoReport v2 under /open311/v2 (JSON and XML, errors as the spec's array of
{code, description}, kept local to these routes), and the operators' review of citizen reports
under /reports (the platform's usual errors)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import Connection, require
from api.errors import STATUS, problem
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from gis.errors import CityOpsError
from gis.keys import Principal
from ops import reports
from ops.open311 import SERVICES, Open311Error, definition_json, service_json, service_of, to_xml
from ops.report_figures import report_figures
from gis.settings import settings_of
from ops.report_settings import ReportSettings

Format = Literal["json", "xml"]
PREFIX = "/open311/v2"
MEDIA_NAME = re.compile(r"/open311/v2/media/([0-9a-f]{24})\.jpg$")
MAX_PHOTOS = 5


def _errors(status: int, description: str, xml: bool, headers: dict | None = None) -> Response:
    errors = [{"code": status, "description": description}]
    if xml:
        return Response(to_xml("errors", errors), status_code=status, media_type="text/xml; charset=utf-8", headers=headers)
    return JSONResponse(errors, status_code=status, headers=headers)


class Open311Route(APIRoute):
    """Answers every refusal on an /open311 route in the spec's error format (XML for .xml paths)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            xml = request.url.path.endswith(".xml")
            try:
                return await handler(request)
            except Open311Error as exc:
                return _errors(exc.status, str(exc), xml, exc.headers)
            except RequestValidationError as exc:
                described = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors())
                return _errors(400, described or "invalid request", xml)
            except StarletteHTTPException as exc:
                return _errors(exc.status_code, str(exc.detail), xml, getattr(exc, "headers", None))
            except CityOpsError as exc:
                status = next((STATUS[k] for k in type(exc).__mro__ if k in STATUS), 400)
                return _errors(status, str(exc), xml)
            except psycopg.errors.DataError as exc:
                return _errors(400, f"{exc.diag.message_primary or 'invalid value'}; nothing was written", xml)
            except psycopg.errors.IntegrityError as exc:
                return _errors(409, f"rejected by {exc.diag.constraint_name or 'a database constraint'}; nothing was written", xml)

        return handle


class OperatorRoute(KeyFirstRoute):
    """Operator routes answer Open311Error refusals (409 conflicts, 404s) in the platform's format (and check their
    key before their body)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Open311Error as exc:
                return problem(exc.status, "Conflict" if exc.status == 409 else "InvalidRequest", str(exc), exc.headers)

        return handle


def report_settings() -> ReportSettings:
    return settings_of(ReportSettings)


Settings = Annotated[ReportSettings, Depends(report_settings)]
# Declared before the connection in each route: the key is checked, and its connection returned, first.
Reviewer = Annotated[Principal, Depends(require("reviewer"))]


def _media_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX + "/media"


# what `.json` and `.xml` answer, declared so that generated clients and validators expect both
OPEN311_ERRORS = {"type": "array", "items": {"type": "object", "required": ["code", "description"], "properties": {
    "code": {"type": "integer", "description": "the HTTP status"}, "description": {"type": "string", "description": "the reason"}}}}
_REFUSED = {"description": "GeoReport v2 errors: an array of {code, description} (XML for `.xml`)",
            "content": {"application/json": {"schema": OPEN311_ERRORS}, "text/xml": {}}}
# floods (429) and overload (503) come from the front door, before any route, as everywhere else (the
# exception document), or from the route itself (the report limits: GeoReport's errors, XML for .xml)
_FRONT_DOOR = {"description": "Too many requests, or overloaded, with Retry-After",
               "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Exception"},
                                                                     OPEN311_ERRORS]}}, "text/xml": {}}}
_REFUSALS: dict[int | str, dict] = {400: _REFUSED, 429: _FRONT_DOOR, 503: _FRONT_DOOR, "default": _REFUSED}
JSON_OR_XML: dict[int | str, dict] = {200: {"content": {"application/json": {}, "text/xml": {}}}, **_REFUSALS}


def _answer(fmt: Format, root: str, data: list | dict) -> Response:
    if fmt == "xml":
        return Response(to_xml(root, data), media_type="text/xml; charset=utf-8")
    return JSONResponse(data)


def _check_jurisdiction(jurisdiction_id: str | None, settings: ReportSettings) -> None:
    if jurisdiction_id and jurisdiction_id != settings.jurisdiction_id:
        raise Open311Error(404, f"unknown jurisdiction_id {jurisdiction_id!r}; this server answers for {settings.jurisdiction_id!r}")


def _client_ip(request: Request) -> str | None:
    """The peer's address (behind a proxy, the proxy's: put the real one in the connection, not a header)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return host  # a test client's name: still a rate-limit key


def _float(form, name: str) -> float | None:
    value = form.get(name)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise Open311Error(400, f"{name} must be a number, not {str(value)[:40]!r}") from exc


def _text(form, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


async def _photos(uploads: list, settings: ReportSettings) -> list[reports.Photo]:
    if len(uploads) > MAX_PHOTOS:
        raise Open311Error(400, f"at most {MAX_PHOTOS} photos per report")
    photos = []
    for upload in uploads:
        if not isinstance(upload, UploadFile):
            raise Open311Error(400, "media must be a file upload (multipart/form-data); use media_url for a stored upload")
        data = await upload.read(settings.max_photo_bytes + 1)
        photos.append(await run_in_threadpool(reports.prepare_photo, data, settings))
    return photos


def _dates(start_date: str | None, end_date: str | None) -> tuple[datetime | None, datetime | None]:
    parsed = []
    for name, value in (("start_date", start_date), ("end_date", end_date)):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
        except ValueError as exc:
            raise Open311Error(400, f"{name} must be a W3C datetime such as 2026-11-01T00:00:00Z, not {value!r}") from exc
        if moment is not None and moment.tzinfo is None:
            moment = moment.astimezone()
        parsed.append(moment)
    return parsed[0], parsed[1]


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class Decision(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="why: shown to the reporter")


class Moderation(BaseModel):
    description: str = Field(max_length=4000, description="the public text from now on (the original is kept)")
    reason: str = Field(min_length=1, max_length=1000, description="why the text was changed: shown to the reporter")


class Merge(BaseModel):
    into: int = Field(description="the open request this one duplicates")


class Closing(BaseModel):
    note: str = Field(default="核查通过 inspected and fixed", max_length=1000)


def open311_extension() -> Extension:
    router = APIRouter(prefix=PREFIX, tags=["Open311 GeoReport v2"], route_class=Open311Route)

    @router.get("/services.{fmt}", responses=JSON_OR_XML, summary="The categories and items citizens report")
    async def get_services(fmt: Format, settings: Settings, jurisdiction_id: str | None = None):
        _check_jurisdiction(jurisdiction_id, settings)
        return _answer(fmt, "services", [service_json(s) for s in SERVICES])

    @router.get("/services/{service_code}.{fmt}", responses=JSON_OR_XML, summary="The attributes of one item")
    async def get_service_definition(service_code: str, fmt: Format, settings: Settings, jurisdiction_id: str | None = None):
        _check_jurisdiction(jurisdiction_id, settings)
        try:
            service = service_of(service_code)
        except Open311Error as exc:
            raise Open311Error(404, str(exc)) from exc
        return _answer(fmt, "service_definition", definition_json(service))

    @router.post("/requests.{fmt}", responses=JSON_OR_XML, summary="Submit a report (form-encoded, or multipart with `media` photos)")
    async def post_request(fmt: Format, request: Request, conn: Connection, settings: Settings):
        async with request.form(max_files=MAX_PHOTOS + 1) as form:
            _check_jurisdiction(_text(form, "jurisdiction_id"), settings)
            client_ip = _client_ip(request)
            await reports.check_rate(conn, settings, device_id=_text(form, "device_id"), client_ip=client_ip)
            media_names = []
            for url in form.getlist("media_url"):
                match = MEDIA_NAME.search(str(url))
                if not match:
                    raise Open311Error(400, f"media_url {str(url)[:80]!r} is not a photo uploaded to POST {PREFIX}/media")
                media_names.append(match.group(1))
            attributes = {key[len("attribute["):-1]: str(value) for key, value in form.multi_items()
                          if key.startswith("attribute[") and key.endswith("]")}
            submission = reports.Submission(
                service_code=_text(form, "service_code"), lat=_float(form, "lat"), lon=_float(form, "long"),
                description=_text(form, "description"), crs=_text(form, "crs"), attributes=attributes,
                address_string=_text(form, "address_string"), account_id=_text(form, "account_id"),
                first_name=_text(form, "first_name"), last_name=_text(form, "last_name"), phone=_text(form, "phone"),
                email=_text(form, "email"), device_id=_text(form, "device_id"),
                anonymous=(_text(form, "anonymous") or "").lower() in ("1", "true", "yes"),
                client_ip=client_ip, media_names=media_names)
            photos = await _photos(form.getlist("media"), settings)
        answer = await reports.submit_report(conn, submission, photos, settings)
        return _answer(fmt, "service_requests", [answer])

    @router.post("/media.{fmt}", responses=JSON_OR_XML, summary="Store a photo before its report; answers the media_url to send")
    async def post_media(fmt: Format, request: Request, conn: Connection, settings: Settings):
        async with request.form(max_files=1) as form:
            client_ip = _client_ip(request)
            await reports.check_rate(conn, settings, device_id=_text(form, "device_id"), client_ip=client_ip)
            uploads = form.getlist("media")
            if not uploads:
                raise Open311Error(400, "send the photo as the multipart field media")
            photos = await _photos(uploads, settings)
        name = await reports.store_upload(conn, photos[0])
        return _answer(fmt, "media", {"media_url": f"{_media_base(request)}/{name}.jpg",
                                      "width": photos[0].width, "height": photos[0].height})

    @router.get("/media/{name}.jpg", summary="A stored photo (resized, without EXIF)",
                responses={200: {"content": {"image/jpeg": {}}}, **_REFUSALS})
    async def get_media(name: str, conn: Connection):
        return Response(await reports.media_content(conn, name), media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/requests.{fmt}", responses=JSON_OR_XML, summary="Reports: by id, item, status and requested date (last 90 days by default)")
    async def get_requests(fmt: Format, request: Request, conn: Connection, settings: Settings,
                           service_request_id: str | None = None, service_code: str | None = None,
                           start_date: str | None = None, end_date: str | None = None, status: str | None = None,
                           jurisdiction_id: str | None = None):
        _check_jurisdiction(jurisdiction_id, settings)
        ids = _csv(service_request_id)
        if not all(i.isdigit() for i in ids):
            raise Open311Error(400, "service_request_id is a comma-separated list of numbers")
        start, end = _dates(start_date, end_date)
        wanted = reports.RequestFilter(ids=[int(i) for i in ids], service_codes=_csv(service_code), start=start, end=end,
                                       statuses=[s.lower() for s in _csv(status)])
        return _answer(fmt, "service_requests", await reports.list_requests(conn, wanted, settings, _media_base(request)))

    @router.get("/requests/nearby.{fmt}", responses=JSON_OR_XML, summary="Open reports of this item within 50 m: suggest them before submitting")
    async def get_nearby(fmt: Format, request: Request, conn: Connection, settings: Settings, service_code: str,
                         lat: float, long: float, crs: str | None = None):
        service = service_of(service_code)
        lon, lat_, _ = reports.to_cgcs2000(long, lat, crs)
        return _answer(fmt, "service_requests",
                       await reports.nearby_open(conn, service.code, lon, lat_, settings, _media_base(request)))

    @router.get("/requests/{service_request_id}.{fmt}", responses=JSON_OR_XML, summary="One report")
    async def get_request(service_request_id: int, fmt: Format, request: Request, conn: Connection, settings: Settings,
                          jurisdiction_id: str | None = None):
        _check_jurisdiction(jurisdiction_id, settings)
        return _answer(fmt, "service_requests", [await reports.get_request(conn, service_request_id, _media_base(request))])

    @router.get("/requests/{service_request_id}/updates.{fmt}", responses=JSON_OR_XML, summary="Every step of a report")
    async def get_updates(service_request_id: int, fmt: Format, conn: Connection):
        return _answer(fmt, "updates", await reports.request_updates(conn, service_request_id))

    @router.post("/requests/{service_request_id}/reopen.{fmt}", responses=JSON_OR_XML, summary="The reporter reopens a report closed as fixed")
    async def post_reopen(service_request_id: int, fmt: Format, request: Request, conn: Connection, settings: Settings):
        async with request.form(max_files=0) as form:
            token, reason = _text(form, "token") or "", _text(form, "reason") or ""
        return _answer(fmt, "service_requests",
                       [await reports.reopen_report(conn, service_request_id, token, reason, settings)])

    @router.post("/requests/{service_request_id}/feedback.{fmt}", responses=JSON_OR_XML, summary="Was this fixed? (once per case)")
    async def post_feedback(service_request_id: int, fmt: Format, request: Request, conn: Connection, settings: Settings):
        async with request.form(max_files=0) as form:
            token, fixed, rating = _text(form, "token") or "", (_text(form, "fixed") or "").lower(), _text(form, "rating")
        if fixed not in ("true", "false", "yes", "no", "1", "0"):
            raise Open311Error(400, "fixed must be true or false")
        if rating is not None and not rating.isdigit():
            raise Open311Error(400, "rating is a whole number from 1 to 5")
        answer = await reports.answer_fixed(conn, service_request_id, token, fixed in ("true", "yes", "1"),
                                            int(rating) if rating else None, settings)
        return _answer(fmt, "service_requests", [answer])

    @router.get("/tokens/{token}.{fmt}", responses=JSON_OR_XML, summary="The request a submission token became")
    async def get_token(token: str, fmt: Format, conn: Connection):
        return _answer(fmt, "service_requests", [await reports.request_of_token(conn, token)])

    operators = APIRouter(prefix="/reports", tags=["Citizen reports (operators)"], route_class=OperatorRoute)

    @operators.get("/figures", summary="Wall figures: reports today, accepted, closed, satisfaction, per item")
    async def get_figures(conn: Connection):
        return await report_figures(conn)

    @operators.post("/{report_id}/accept", summary="Accept a report (立案): its case is filed, the reporter rewarded once")
    async def post_accept(report_id: int, operator: Reviewer, conn: Connection, settings: Settings):
        return await reports.accept_report(conn, report_id, operator, settings)

    @operators.post("/{report_id}/reject", summary="Do not accept a report; the reporter is told why")
    async def post_reject(report_id: int, body: Decision, operator: Reviewer, conn: Connection):
        return await reports.reject_report(conn, report_id, operator, body.reason)

    @operators.post("/{report_id}/moderate", summary="Change a report's public text; the original is kept")
    async def post_moderate(report_id: int, body: Moderation, operator: Reviewer, conn: Connection):
        return await reports.moderate_report(conn, report_id, operator, body.description, body.reason)

    @operators.post("/{report_id}/merge", summary="Merge a duplicate into an open report (me too)")
    async def post_merge(report_id: int, body: Merge, operator: Reviewer, conn: Connection):
        return await reports.merge_report(conn, report_id, body.into, operator)

    @operators.post("/{report_id}/close", summary="Close a report's case as fixed (核查结案)")
    async def post_close(report_id: int, body: Closing, operator: Reviewer, conn: Connection):
        return await reports.close_report_case(conn, report_id, operator, body.note)

    combined = APIRouter()
    combined.include_router(router)
    combined.include_router(operators)

    return Extension(router=combined)
