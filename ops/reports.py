"""Citizen reports (市民城管通): a report arrives over Open311, is located (GCJ-02/BD-09 brought to
CGCS2000, undeclared GCJ-02 detected), routed and opened as a 'public' case through
`ops.cases.open_case`, then reviewed by an operator (accept / reject / moderate / merge), followed
by its reporter (steps, reopen within N days of closure, "was this fixed?").

Owns city.citizen_report, report_case, report_update, report_media, report_feedback,
report_reward, report_rate and residential_compound. The case a report opens belongs to
`ops.cases`: the desk's decisions on it (accept, reject, merge, close) go through
`ops.cases.record_desk_decision`, checked against the state the case is in.

Privacy: public answers carry no name, phone, e-mail or typed address; phone numbers and e-mail
addresses in the text are masked; a location inside a residential compound is shown at the
compound's public point, and the address as the compound's or community's name."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import math
import random
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from gis.crs import STORAGE_SRID
from gis.errors import InvalidInput
from gis.keys import Principal
from gis.source_crs import bd09_to_wgs84, gcj02_to_wgs84, parse_crs
from ops import cases
from ops.cases import open_case, route
from ops.open311 import CASE_STATUS, SERVICE_BY_CODE, Open311Error, check_attributes, service_of
from ops.report_settings import ReportSettings

MAX_DESCRIPTION = 4000
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")
CLOSED_CASE_STATES = ("closed", "evaluated", "voided")


# ---------------------------------------------------------------- photos

@dataclass(frozen=True)
class Photo:
    content: bytes
    width: int
    height: int
    exif_lon: float | None
    exif_lat: float | None


def _degrees(value: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = d + m / 60 + s / 3600
    return -degrees if str(ref).upper() in ("S", "W") else degrees


def _exif_location(image: Image.Image) -> tuple[float | None, float | None]:
    gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef))
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None, None
    return lon, lat


def prepare_photo(data: bytes, settings: ReportSettings) -> Photo:
    """A photo as stored: checked (size, format, pixels), its EXIF GPS read, turned upright,
    resized to `photo_max_side`, re-encoded as JPEG with no EXIF at all."""
    if not data:
        raise Open311Error(400, "the media upload is empty")
    if len(data) > settings.max_photo_bytes:
        raise Open311Error(413, f"the photo is {len(data):,} bytes; at most {settings.max_photo_bytes:,} are accepted")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in PHOTO_FORMATS:
                raise Open311Error(415, f"the media is {image.format or 'not an image'}; send a JPEG, PNG or WebP photo")
            if image.width * image.height > settings.max_photo_pixels:
                raise Open311Error(413, f"the photo has {image.width}×{image.height} pixels; at most "
                                        f"{settings.max_photo_pixels:,} are accepted")
            lon, lat = _exif_location(image)
            scale = min(1.0, settings.photo_max_side / max(image.size))
            # JPEG: decode at a reduced DCT scale (½, ¼, ⅛) no smaller than the stored size: several times faster
            image.draft("RGB", (round(image.width * scale), round(image.height * scale)))
            side = settings.photo_max_side
            upright = ImageOps.exif_transpose(image).convert("RGB")
            upright.thumbnail((side, side), Image.Resampling.BILINEAR)  # bicubic costs 3× for no visible gain at this size
            out = io.BytesIO()
            upright.save(out, "JPEG", quality=85)  # no exif= argument: nothing of the original EXIF is written
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise Open311Error(415, f"the media is not a readable image: {exc}") from exc
    return Photo(out.getvalue(), upright.width, upright.height, lon, lat)


# ---------------------------------------------------------------- locations

def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return math.hypot((lon2 - lon1) * 111_320 * math.cos(math.radians(lat1)), (lat2 - lat1) * 110_574)


def _offset_candidates(lon: float, lat: float) -> list[tuple[str, float, float]]:
    found = []
    for name, to_wgs84 in (("gcj02", gcj02_to_wgs84), ("bd09", bd09_to_wgs84)):
        x, y = to_wgs84(np.array([lon]), np.array([lat]))
        found.append((name, float(x[0]), float(y[0])))
    return found


def to_cgcs2000(lon: float, lat: float, crs: str | None) -> tuple[float, float, str]:
    """(lon, lat) in CGCS2000 and the name of the system it was declared in (default WGS84, which
    differs from CGCS2000 by well under a metre)."""
    if not crs:
        return lon, lat, "wgs84"
    try:
        source = parse_crs(crs)
    except InvalidInput as exc:
        raise Open311Error(400, str(exc)) from exc
    if source.is_offset:
        x, y = source.to_cgcs2000()(np.array([lon]), np.array([lat]))
        return float(x[0]), float(y[0]), source.name
    if not source.crs.is_geographic:
        raise Open311Error(400, f"crs {crs!r} is projected; lat/long must be geographic (WGS84, CGCS2000, gcj02 or bd09)")
    x, y = source.to_cgcs2000()(lon, lat)
    return float(x), float(y), source.name


def check_undeclared_offset(lon: float, lat: float, photo_positions: list[tuple[float | None, float | None]],
                            settings: ReportSettings) -> None:
    """A location sent as WGS84 that matches a photo's GPS (WGS84) only once read as GCJ-02/BD-09
    came from a Chinese phone map without saying so."""
    tolerance = settings.exif_gcj02_tolerance_m
    for gps_lon, gps_lat in photo_positions:
        if gps_lon is None or _metres(lon, lat, gps_lon, gps_lat) <= tolerance:
            continue
        for name, x, y in _offset_candidates(lon, lat):
            if _metres(x, y, gps_lon, gps_lat) <= tolerance:
                raise Open311Error(400, f"the location looks like {name.upper()} (a phone map's offset coordinates): "
                                        f"it lies {_metres(lon, lat, gps_lon, gps_lat):,.0f} m from the photo's GPS "
                                        f"position, {_metres(x, y, gps_lon, gps_lat):,.0f} m once read as {name}; "
                                        f"send crs={name} with the report")


async def refuse_outside(conn: psycopg.AsyncConnection, lon: float, lat: float, declared: str) -> None:
    """A point in no unit grid: a 400 that says whether it would lie inside once read as GCJ-02/BD-09."""
    if declared not in ("gcj02", "bd09"):
        for name, x, y in _offset_candidates(lon, lat):
            try:
                await route(conn, x, y)
            except InvalidInput:
                continue
            # a point in the canal is near grids too: say what would fit, not that it is GCJ-02
            raise Open311Error(400, f"the location {lat:.6f}, {lon:.6f} lies in no unit grid of the city (outside it, or "
                                    f"on water); read as {name.upper()} (a Chinese phone map's offset coordinates) it "
                                    f"would lie inside: if it came from such a map, send crs={name} with the report")
    raise Open311Error(400, f"the location {lat:.6f}, {lon:.6f} lies in no unit grid of the city (outside it, or on water)")


# ---------------------------------------------------------------- rate limits

RATE_SQL = """
INSERT INTO city.report_rate AS r (key, window_start, hits)
SELECT k, to_timestamp(floor(extract(epoch FROM now()) / %(window)s) * %(window)s), 1 FROM unnest(%(keys)s::text[]) AS k
ON CONFLICT (key, window_start) DO UPDATE SET hits = r.hits + 1
RETURNING key, hits, ceil(extract(epoch FROM r.window_start + make_interval(secs => %(window)s) - now()))::int AS retry_s
"""


async def check_rate(conn: psycopg.AsyncConnection, settings: ReportSettings, *, device_id: str | None,
                     client_ip: str | None) -> None:
    """Counts this submission against its device and IP (committed even when the submission then
    fails, so bad requests count too); 429 with Retry-After over either limit."""
    limits = {}
    if device_id:
        limits["device:" + hashlib.sha256(device_id.encode()).hexdigest()[:32]] = settings.device_limit
    if client_ip:
        limits["ip:" + client_ip] = settings.ip_limit
    if not limits:
        return
    # one statement on the pool's autocommit connection: committed at once, whatever follows
    rows = await (await conn.execute(RATE_SQL, {"window": settings.rate_window_s, "keys": list(limits)})).fetchall()
    if random.random() < 0.01:  # forget old windows now and then
        await conn.execute("DELETE FROM city.report_rate WHERE window_start < now() - interval '1 day'")
    over = [row for row in rows if row["hits"] > limits[row["key"]]]
    if over:
        retry = max(1, max(row["retry_s"] for row in over))
        what = "this device" if over[0]["key"].startswith("device:") else "this address"
        raise Open311Error(429, f"too many reports from {what}: at most {limits[over[0]['key']]} per "
                                f"{settings.rate_window_s} s; try again in {retry} s", {"Retry-After": str(retry)})


# ---------------------------------------------------------------- privacy

_PRIVATE_PATTERNS = (
    re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"),                      # mobile numbers
    re.compile(r"(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)"),                # landlines
    re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"),                     # resident identity numbers
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),                    # e-mail addresses
)


def mask_private(text: str | None, names: list[str | None] = ()) -> str | None:
    """Text as shown publicly: phone numbers, identity numbers, e-mail addresses and the reporter's
    own name replaced by ***."""
    if not text:
        return text
    for pattern in _PRIVATE_PATTERNS:
        text = pattern.sub("***", text)
    variants = set()
    for name in filter(None, names):
        parts = name.split()
        variants.update({name.strip(), "".join(parts), *parts})
    for variant in sorted(variants, key=len, reverse=True):
        if len(variant) >= 2:  # a one-character part (a surname) would mask ordinary words
            text = text.replace(variant, "***")
    return text


def reporter_key(account_id: str | None, phone: str | None, email: str | None, device_id: str | None) -> bytes | None:
    """Who the reporter is for rewards (a hash; none = anonymous): account, else phone, e-mail, device."""
    for kind, value in (("account", account_id), ("phone", re.sub(r"\D", "", phone or "")),
                        ("email", (email or "").strip().lower()), ("device", device_id)):
        if value:
            return hashlib.sha256(f"{kind}:{value}".encode()).digest()
    return None


# ---------------------------------------------------------------- public view

PUBLIC_SQL = """
SELECT r.id, r.service_code, r.description, r.review, r.review_reason, r.moderation_reason, r.duplicate_of,
       r.me_too, r.requested_at, r.reporter_name, r.case_id, r.reopened_count,
       greatest(r.updated_at, (SELECT max(e.at) FROM city.case_event e WHERE e.case_id = r.case_id)) AS updated_at,
       f.state AS case_state, f.case_no, f.deadline_at, f.deadline_at < now() AS past_deadline, u.name AS agency,
       round(ST_X(r.public_geom)::numeric, 6)::float8 AS lon, round(ST_Y(r.public_geom)::numeric, 6)::float8 AS lat,
       coalesce(c.name, cm.name || '附近') AS public_address,
       (SELECT array_agg(m.name ORDER BY m.id) FROM city.report_media m WHERE m.report_id = r.id) AS media
FROM city.citizen_report r
LEFT JOIN city.case_file f ON f.id = r.case_id
LEFT JOIN city.responsible_unit u ON u.id = r.responsible_unit_id
LEFT JOIN city.residential_compound c ON c.id = r.compound_id
LEFT JOIN city.community cm ON cm.code = left(r.bgcode, 12)
"""
# The Open311 status of a report, as SQL (for the status filter) — keep in step with `status_of`.
OPEN_SQL = "(r.review IN ('pending', 'accepted') AND coalesce(f.state, 'reported') NOT IN ('closed', 'evaluated', 'voided'))"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def status_of(row: dict) -> tuple[str, str, str]:
    """(Open311 status, FixMyStreet-style detailed_status, status_notes) of a public row."""
    if row["review"] == "duplicate":
        return "closed", "DUPLICATE", f"与 {row['duplicate_of']} 号重复，已合并 merged into request {row['duplicate_of']}"
    if row["review"] == "rejected":
        return "closed", "NO_FURTHER_ACTION", f"未受理 not accepted: {row['review_reason']}"
    status, detailed, note = CASE_STATUS[row["case_state"] or "reported"]
    if row["reopened_count"] and row["case_state"] == "reported":
        note = f"已重新打开 reopened; {note}"
    if row["moderation_reason"]:
        note = f"{note}; 内容已修改 text moderated: {row['moderation_reason']}"
    return status, detailed, note


def public_request(row: dict, media_base: str) -> dict:
    status, detailed, note = status_of(row)
    service = SERVICE_BY_CODE[row["service_code"]]
    media = [f"{media_base}/{name}.jpg" for name in row["media"] or ()]
    expected = row["deadline_at"] if status == "open" else None
    return {
        "service_request_id": str(row["id"]), "status": status, "status_notes": note, "detailed_status": detailed,
        "service_name": service.name, "service_code": service.code,
        "description": mask_private(row["description"], [row["reporter_name"]]),
        "agency_responsible": row["agency"], "service_notice": "",
        "requested_datetime": _iso(row["requested_at"]), "updated_datetime": _iso(row["updated_at"]),
        "expected_datetime": _iso(expected), "address": row["public_address"], "address_id": None, "zipcode": None,
        "lat": row["lat"], "long": row["lon"], "media_url": media[0] if media else None, "media_urls": media,
        "overdue": status == "open" and bool(row["past_deadline"]),
        "me_too": row["me_too"], "duplicate_of": str(row["duplicate_of"]) if row["duplicate_of"] else None,
        "case_no": row["case_no"],
    }


async def get_request(conn: psycopg.AsyncConnection, request_id: int, media_base: str) -> dict:
    row = await (await conn.execute(PUBLIC_SQL + " WHERE r.id = %s", [request_id])).fetchone()
    if row is None:
        raise Open311Error(404, f"no service request {request_id}")
    return public_request(row, media_base)


@dataclass
class RequestFilter:
    ids: list[int] = field(default_factory=list)
    service_codes: list[str] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    statuses: list[str] = field(default_factory=list)


async def list_requests(conn: psycopg.AsyncConnection, wanted: RequestFilter, settings: ReportSettings,
                        media_base: str) -> list[dict]:
    """GET requests: by ids (which override every other filter), else by service codes, status and
    requested_datetime range (default the last `list_days` days, never a longer span), newest first."""
    if wanted.ids:
        rows = await (await conn.execute(PUBLIC_SQL + " WHERE r.id = ANY(%s) ORDER BY r.id", [wanted.ids])).fetchall()
        return [public_request(row, media_base) for row in rows]
    unknown = sorted(set(wanted.service_codes) - set(SERVICE_BY_CODE))
    if unknown:
        raise Open311Error(400, f"unknown service_code {', '.join(unknown)}")
    bad = sorted(set(wanted.statuses) - {"open", "closed"})
    if bad:
        raise Open311Error(400, f"status must be open or closed, not {', '.join(bad)}")
    span = timedelta(days=settings.list_days)
    end = wanted.end or ((wanted.start + span) if wanted.start else datetime.now().astimezone())
    start = wanted.start or end - span
    if end < start:
        raise Open311Error(400, "end_date is before start_date")
    if end - start > span:
        raise Open311Error(400, f"start_date to end_date spans more than {settings.list_days} days")
    where = ["r.requested_at >= %(start)s", "r.requested_at <= %(end)s"]
    if wanted.service_codes:
        where.append("r.service_code = ANY(%(codes)s)")
    if len(set(wanted.statuses)) == 1:
        where.append(OPEN_SQL if wanted.statuses[0] == "open" else f"NOT {OPEN_SQL}")
    rows = await (await conn.execute(
        PUBLIC_SQL + " WHERE " + " AND ".join(where) + " ORDER BY r.requested_at DESC, r.id DESC LIMIT %(limit)s",
        {"start": start, "end": end, "codes": wanted.service_codes, "limit": settings.list_limit})).fetchall()
    return [public_request(row, media_base) for row in rows]


NEARBY_SQL = PUBLIC_SQL + f"""
WHERE ST_DWithin(r.geom::geography, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), {STORAGE_SRID})::geography, %(radius)s)
  AND r.service_code = %(code)s AND {OPEN_SQL}
ORDER BY r.geom::geography <-> ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), {STORAGE_SRID})::geography
LIMIT 10
"""


async def nearby_open(conn: psycopg.AsyncConnection, service_code: str, lon: float, lat: float,
                      settings: ReportSettings, media_base: str) -> list[dict]:
    """Open reports of the same service within `duplicate_radius_m` of a CGCS2000 point, nearest first:
    suggested to a citizen before submitting ("is it one of these?")."""
    rows = await (await conn.execute(NEARBY_SQL, {"lon": lon, "lat": lat, "radius": settings.duplicate_radius_m,
                                                  "code": service_code})).fetchall()
    return [public_request(row, media_base) for row in rows]


UPDATES_SQL = """
SELECT at, kind, note FROM (
    SELECT u.at, u.kind, u.note FROM city.report_update u WHERE u.report_id = %(id)s
    UNION ALL
    SELECT e.at, 'case:' || e.state, NULL FROM city.case_event e JOIN city.report_case rc ON rc.case_id = e.case_id
    WHERE rc.report_id = %(id)s AND e.state <> 'reported'
) steps ORDER BY at, kind
"""


async def request_updates(conn: psycopg.AsyncConnection, request_id: int) -> list[dict]:
    """Every step of a report as its reporter sees it: its own updates and its cases' state changes
    (the case events' internal notes are not shown)."""
    if await (await conn.execute("SELECT 1 FROM city.citizen_report WHERE id = %s", [request_id])).fetchone() is None:
        raise Open311Error(404, f"no service request {request_id}")
    rows = await (await conn.execute(UPDATES_SQL, {"id": request_id})).fetchall()
    steps = []
    for row in rows:
        if row["kind"].startswith("case:"):
            state = row["kind"][5:]
            status, detailed, note = CASE_STATUS.get(state, ("open", "OPEN", state))
            steps.append({"updated_datetime": _iso(row["at"]), "status": status, "detailed_status": detailed, "description": note})
        else:
            steps.append({"updated_datetime": _iso(row["at"]), "kind": row["kind"], "description": row["note"]})
    return steps


async def request_of_token(conn: psycopg.AsyncConnection, token: str) -> dict:
    row = await (await conn.execute("SELECT id FROM city.citizen_report WHERE token = %s", [token])).fetchone()
    if row is None:
        raise Open311Error(404, "no service request has this token")
    return {"service_request_id": str(row["id"]), "token": token}


# ---------------------------------------------------------------- submitting

@dataclass
class Submission:
    service_code: str | None
    lat: float | None
    lon: float | None
    description: str | None = None
    crs: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    address_string: str | None = None
    account_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    device_id: str | None = None
    anonymous: bool = False
    client_ip: str | None = None
    media_names: list[str] = field(default_factory=list)


INSERT_REPORT_SQL = f"""
INSERT INTO city.citizen_report (token, service_code, event_class_code, case_id, description, attributes,
    address_string, reporter_key, reporter_name, reporter_phone, reporter_email, device_id, client_ip, declared_crs,
    geom, public_geom, compound_id, bgcode, district_code, responsible_unit_id)
SELECT %(token)s, %(service_code)s, %(event_class_code)s, %(case_id)s, %(description)s, %(attributes)s,
    %(address_string)s, %(reporter_key)s, %(reporter_name)s, %(phone)s, %(email)s, %(device_id)s, %(client_ip)s,
    %(declared_crs)s, p.geom, coalesce(c.public_point, p.geom), c.id, %(bgcode)s, %(district_code)s, %(unit)s
FROM (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), {STORAGE_SRID}) AS geom) p
LEFT JOIN LATERAL (SELECT id, public_point FROM city.residential_compound c
                   WHERE ST_Intersects(c.geom, p.geom) ORDER BY c.id LIMIT 1) c ON true
RETURNING id, compound_id
"""
SUBMIT_SQL = f"""
WITH r AS ({INSERT_REPORT_SQL.strip()}),
     linked AS (INSERT INTO city.report_case (report_id, case_id) SELECT r.id, %(case_id)s FROM r),
     noted AS (INSERT INTO city.report_update (report_id, kind, note) SELECT r.id, 'submitted', %(note)s FROM r)
SELECT id, compound_id FROM r
"""


def _inet(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        return None


def _check_text(submission: Submission) -> None:
    if submission.lat is None or submission.lon is None:
        raise Open311Error(400, "lat and long are required (this server does not geocode address_string)")
    if not (-90 <= submission.lat <= 90 and -180 <= submission.lon <= 180):
        raise Open311Error(400, f"lat {submission.lat} / long {submission.lon} are not a position on Earth")
    if submission.description and len(submission.description) > MAX_DESCRIPTION:
        raise Open311Error(400, f"description has {len(submission.description):,} characters; at most {MAX_DESCRIPTION:,} are accepted")
    for name in ("address_string", "first_name", "last_name", "phone", "email", "device_id", "account_id"):
        value = getattr(submission, name)
        if value and len(value) > 200:
            raise Open311Error(400, f"{name} is longer than 200 characters")


async def submit_report(conn: psycopg.AsyncConnection, submission: Submission, photos: list[Photo],
                        settings: ReportSettings) -> dict:
    """POST requests: checks, locates and routes the report, opens its case (source 'public'),
    stores it with its photos in one transaction. Returns the Open311 answer."""
    service = service_of(submission.service_code)
    attributes = check_attributes(service, submission.attributes)
    _check_text(submission)
    lon, lat, declared = to_cgcs2000(submission.lon, submission.lat, submission.crs)
    name = " ".join(part for part in (submission.first_name, submission.last_name) if part) or None
    identity = {"reporter_key": None, "reporter_name": None, "phone": None, "email": None}
    if not submission.anonymous:
        identity = {"reporter_key": reporter_key(submission.account_id, submission.phone, submission.email, submission.device_id),
                    "reporter_name": name, "phone": submission.phone, "email": submission.email}
    token = secrets.token_urlsafe(18)
    async with conn.transaction():
        attached = []
        if submission.media_names:
            attached = await (await conn.execute(
                "SELECT id, exif_lon, exif_lat FROM city.report_media WHERE name = ANY(%s) AND report_id IS NULL FOR UPDATE",
                [submission.media_names])).fetchall()
            if len(attached) != len(set(submission.media_names)):
                raise Open311Error(400, "media_url must name a photo uploaded to POST media and not yet used by a report")
        if declared not in ("gcj02", "bd09"):
            check_undeclared_offset(lon, lat, [(p.exif_lon, p.exif_lat) for p in photos]
                                    + [(row["exif_lon"], row["exif_lat"]) for row in attached], settings)
        try:
            case_lon, case_lat = await public_point(conn, lon, lat)
            case = await open_case(conn, source="public", lon=case_lon, lat=case_lat, event_class_code=service.event_class_code,
                                   description=mask_private(submission.description, [name]),
                                   address=None if submission.anonymous else submission.address_string,
                                   actor="市民城管通 citizen report")
        except InvalidInput:
            await refuse_outside(conn, lon, lat, declared)
        report = await (await conn.execute(SUBMIT_SQL, {
            "token": token, "service_code": service.code, "event_class_code": service.event_class_code,
            "case_id": case["id"], "description": submission.description, "attributes": psycopg.types.json.Jsonb(attributes),
            "address_string": None if submission.anonymous else submission.address_string,
            "device_id": None if submission.anonymous else submission.device_id,
            "client_ip": None if submission.anonymous else _inet(submission.client_ip), "declared_crs": declared,
            "lon": lon, "lat": lat, "bgcode": case["bgcode"], "district_code": case["district_code"],
            "unit": case["responsible_unit_id"], "note": f"已提交，案卷 {case['case_no']} submitted as case {case['case_no']}",
            **identity})).fetchone()
        report_id = report["id"]
        if photos:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO city.report_media (name, report_id, content, width, height, exif_lon, exif_lat) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [(secrets.token_hex(12), report_id, p.content, p.width, p.height, p.exif_lon, p.exif_lat) for p in photos])
        if attached:
            await conn.execute("UPDATE city.report_media SET report_id = %s WHERE id = ANY(%s)",
                               [report_id, [row["id"] for row in attached]])
    notice = f"预计处理时限 expected by {_iso(case['deadline_at'])}"
    if report["compound_id"]:
        notice += "; 位置在小区内，公开显示为小区位置 shown publicly at the residential compound"
    return {"service_request_id": str(report_id), "token": token, "service_notice": notice, "account_id": None}


async def store_upload(conn: psycopg.AsyncConnection, photo: Photo) -> str:
    """POST media: a photo stored before its report (then named by the report's media_url)."""
    name = secrets.token_hex(12)
    if random.random() < 0.01:  # now and then, forget uploads no report named within a day
        await conn.execute("DELETE FROM city.report_media WHERE report_id IS NULL AND created_at < now() - interval '1 day'")
    await conn.execute("INSERT INTO city.report_media (name, content, width, height, exif_lon, exif_lat) "
                       "VALUES (%s, %s, %s, %s, %s, %s)", [name, photo.content, photo.width, photo.height,
                                                          photo.exif_lon, photo.exif_lat])
    return name


async def media_content(conn: psycopg.AsyncConnection, name: str) -> bytes:
    row = await (await conn.execute("SELECT content FROM city.report_media WHERE name = %s", [name])).fetchone()
    if row is None:
        raise Open311Error(404, f"no media {name}")
    return row["content"]


async def _note(conn: psycopg.AsyncConnection, report_id: int, kind: str, note: str) -> None:
    await conn.execute("INSERT INTO city.report_update (report_id, kind, note) VALUES (%s, %s, %s)", [report_id, kind, note])
    await conn.execute("UPDATE city.citizen_report SET updated_at = now() WHERE id = %s", [report_id])


# ---------------------------------------------------------------- case transitions

# ---------------------------------------------------------------- operators

REVIEW_SQL = """
SELECT r.id, r.review, r.service_code, r.reporter_key, r.bgcode, r.district_code, r.case_id, r.duplicate_of, r.me_too, r.reopened_count,
       r.description, r.original_description, f.state AS case_state, f.closed_at,
       (now() AT TIME ZONE 'Asia/Shanghai')::date AS today
FROM city.citizen_report r LEFT JOIN city.case_file f ON f.id = r.case_id
WHERE r.id = %s FOR UPDATE OF r
"""


async def _locked(conn: psycopg.AsyncConnection, report_id: int, operator: Principal | None = None) -> dict:
    """The report, locked; an operator's key must cover its district (checked on the locked row)."""
    row = await (await conn.execute(REVIEW_SQL, [report_id])).fetchone()
    if row is None:
        raise Open311Error(404, f"no service request {report_id}")
    if operator is not None:
        operator.require_district(row["district_code"])
    return row


def _pending(row: dict) -> None:
    if row["review"] != "pending":
        raise Open311Error(409, f"request {row['id']} is already {row['review']}")


async def accept_report(conn: psycopg.AsyncConnection, report_id: int, operator: Principal, settings: ReportSettings) -> dict:
    """Accept (立案): the case is filed, and the reporter rewarded unless anonymous, already
    rewarded for this report, or rewarded today for the same item in the same unit grid."""
    actor = operator.name
    async with conn.transaction():
        row = await _locked(conn, report_id, operator)
        _pending(row)
        await conn.execute("UPDATE city.citizen_report SET review = 'accepted', reviewed_by = %s WHERE id = %s", [actor, report_id])
        await cases.record_desk_decision(conn, row["case_id"], "accept", actor, "市民上报已受理 citizen report accepted")
        await _note(conn, report_id, "accepted", "已受理立案 accepted")
        rewarded = None
        if row["reporter_key"] is None:
            reason = "anonymous reports are not rewarded"
        else:
            rewarded = await (await conn.execute(
                "INSERT INTO city.report_reward (report_id, reporter_key, service_code, bgcode, day, amount_fen) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING amount_fen",
                [report_id, row["reporter_key"], row["service_code"], row["bgcode"], row["today"], settings.reward_fen])).fetchone()
            reason = None if rewarded else "already rewarded for this item at this place today, or for this report"
        await _note(conn, report_id, "reward", f"奖励 rewarded {rewarded['amount_fen'] / 100:.2f} 元" if rewarded
                    else f"无奖励 no reward: {reason}")
    return {"service_request_id": str(report_id), "review": "accepted",
            "reward_fen": rewarded["amount_fen"] if rewarded else 0, "no_reward_reason": reason}


async def reject_report(conn: psycopg.AsyncConnection, report_id: int, operator: Principal, reason: str) -> dict:
    """Not accepted (e.g. not the city's responsibility): the case is voided; the reporter is told why."""
    actor = operator.name
    async with conn.transaction():
        row = await _locked(conn, report_id, operator)
        _pending(row)
        await conn.execute("UPDATE city.citizen_report SET review = 'rejected', review_reason = %s, reviewed_by = %s "
                           "WHERE id = %s", [reason, actor, report_id])
        await cases.record_desk_decision(conn, row["case_id"], "reject", actor, f"市民上报未受理: {reason}")
        await _note(conn, report_id, "rejected", f"未受理 not accepted: {reason}")
    return {"service_request_id": str(report_id), "review": "rejected"}


async def moderate_report(conn: psycopg.AsyncConnection, report_id: int, operator: Principal, description: str, reason: str) -> dict:
    """Replace the public text; the original is kept (first original only) and the reason is shown."""
    actor = operator.name
    if len(description) > MAX_DESCRIPTION:
        raise Open311Error(400, f"description has {len(description):,} characters; at most {MAX_DESCRIPTION:,} are accepted")
    async with conn.transaction():
        await _locked(conn, report_id, operator)
        await conn.execute(
            "UPDATE city.citizen_report SET original_description = coalesce(original_description, description), "
            "description = %s, moderation_reason = %s, reviewed_by = %s WHERE id = %s",
            [description, reason, actor, report_id])
        await _note(conn, report_id, "moderated", f"内容已修改 text moderated: {reason}")
    return {"service_request_id": str(report_id), "moderated": True}


async def merge_report(conn: psycopg.AsyncConnection, report_id: int, into_id: int, operator: Principal) -> dict:
    """Merge a pending report into an open one of the same service ("me too"): its case is voided,
    reports already merged into it follow it, and the target counts them all."""
    actor = operator.name
    if report_id == into_id:
        raise Open311Error(409, "a request cannot be merged into itself")
    async with conn.transaction():
        first, second = sorted((report_id, into_id))  # lock in id order: two merges never deadlock
        rows = {first: await _locked(conn, first, operator), second: await _locked(conn, second, operator)}
        row, target = rows[report_id], rows[into_id]
        _pending(row)
        if row["reopened_count"]:
            raise Open311Error(409, f"request {report_id} was accepted before; it cannot be merged as a duplicate")
        if target["review"] not in ("pending", "accepted") or target["case_state"] in CLOSED_CASE_STATES:
            raise Open311Error(409, f"request {into_id} is not open; merge into an open request")
        if target["service_code"] != row["service_code"]:
            raise Open311Error(409, f"request {into_id} is {target['service_code']}, not {row['service_code']}")
        await conn.execute("UPDATE city.citizen_report SET duplicate_of = %s WHERE duplicate_of = %s", [into_id, report_id])
        await conn.execute("UPDATE city.citizen_report SET review = 'duplicate', duplicate_of = %s, reviewed_by = %s, "
                           "me_too = 0 WHERE id = %s", [into_id, actor, report_id])
        count = (await (await conn.execute("UPDATE city.citizen_report SET me_too = me_too + %s WHERE id = %s RETURNING me_too",
                                           [1 + row["me_too"], into_id])).fetchone())["me_too"]
        await cases.record_desk_decision(conn, row["case_id"], "merge", actor, f"重复上报，并入 {into_id} 号 duplicate of request {into_id}")
        await _note(conn, report_id, "merged", f"与 {into_id} 号重复，已合并 merged into request {into_id}")
        await _note(conn, into_id, "me_too", f"又有市民上报同一问题 another citizen reported this too ({count})")
    return {"service_request_id": str(report_id), "duplicate_of": str(into_id), "me_too": count}


async def close_report_case(conn: psycopg.AsyncConnection, report_id: int, operator: Principal, note: str) -> dict:
    """Closed as fixed (核查结案) by an operator."""
    actor = operator.name
    async with conn.transaction():
        row = await _locked(conn, report_id, operator)
        if row["review"] != "accepted" or row["case_state"] in CLOSED_CASE_STATES:
            raise Open311Error(409, f"request {report_id} is not an accepted open request")
        await cases.record_desk_decision(conn, row["case_id"], "close", actor, note)
        await _note(conn, report_id, "closed", f"已结案 closed as fixed: {note}")
    return {"service_request_id": str(report_id), "status": "closed"}


# ---------------------------------------------------------------- reporters

async def _by_token(conn: psycopg.AsyncConnection, report_id: int, token: str) -> dict:
    owner = await (await conn.execute("SELECT 1 FROM city.citizen_report WHERE id = %s AND token = %s",
                                      [report_id, token])).fetchone()
    if owner is None:  # the same answer for a wrong token and a missing request
        raise Open311Error(404, f"no service request {report_id} with this token")
    return await _locked(conn, report_id)


PUBLIC_POINT_SQL = f"""
SELECT ST_X(public_point) AS lon, ST_Y(public_point) AS lat FROM city.residential_compound
WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%s, %s), {STORAGE_SRID})) ORDER BY id LIMIT 1
"""


async def public_point(conn: psycopg.AsyncConnection, lon: float, lat: float) -> tuple[float, float]:
    """Where a report's case is placed: a point inside a residential compound is the compound's
    public point, because the cases collection and its tiles are public (the exact point stays in
    the report, for operators)."""
    row = await (await conn.execute(PUBLIC_POINT_SQL, [lon, lat])).fetchone()
    return (row["lon"], row["lat"]) if row else (lon, lat)


async def _reopen(conn: psycopg.AsyncConnection, row: dict, reason: str, settings: ReportSettings) -> dict:
    if row["case_state"] not in ("closed", "evaluated") or row["review"] != "accepted":
        raise Open311Error(409, f"request {row['id']} is not closed as fixed; only a fixed request can be reopened")
    closed_at = row["closed_at"]
    limit = timedelta(days=settings.reopen_days)
    age = await (await conn.execute("SELECT now() - %s::timestamptz AS age", [closed_at])).fetchone()
    if age["age"] > limit:
        raise Open311Error(409, f"request {row['id']} was closed on {_iso(closed_at)}, more than {settings.reopen_days} days "
                                "ago; submit a new report instead")
    place = await (await conn.execute("SELECT ST_X(public_geom) AS lon, ST_Y(public_geom) AS lat, address_string "
                                      "FROM city.citizen_report "
                                      "WHERE id = %s", [row["id"]])).fetchone()
    service = SERVICE_BY_CODE[row["service_code"]]
    case = await open_case(conn, source="public", lon=place["lon"], lat=place["lat"], event_class_code=service.event_class_code,
                           description=mask_private(f"市民重新打开 reopened by the reporter: {reason}\n{row['description'] or ''}"),
                           address=place["address_string"], actor="市民城管通 citizen report")
    await conn.execute("UPDATE city.citizen_report SET case_id = %s, review = 'pending', reopened_count = reopened_count + 1 "
                       "WHERE id = %s", [case["id"], row["id"]])
    await conn.execute("INSERT INTO city.report_case (report_id, case_id) VALUES (%s, %s)", [row["id"], case["id"]])
    await _note(conn, row["id"], "reopened", f"已重新打开，新案卷 {case['case_no']} reopened as case {case['case_no']}: {mask_private(reason)}")
    return {"service_request_id": str(row["id"]), "status": "open", "case_no": case["case_no"]}


async def reopen_report(conn: psycopg.AsyncConnection, report_id: int, token: str, reason: str,
                        settings: ReportSettings) -> dict:
    """The reporter reopens a request closed as fixed within `reopen_days`: a new case linked to it."""
    if not reason or len(reason) > MAX_DESCRIPTION:
        raise Open311Error(400, f"say why the problem is not fixed (1 to {MAX_DESCRIPTION:,} characters)")
    async with conn.transaction():
        return await _reopen(conn, await _by_token(conn, report_id, token), reason, settings)


async def answer_fixed(conn: psycopg.AsyncConnection, report_id: int, token: str, fixed: bool, rating: int | None,
                       settings: ReportSettings) -> dict:
    """"Was this fixed?" once per case; a 'no' within the reopen window reopens the request."""
    if rating is not None and not 1 <= rating <= 5:
        raise Open311Error(400, "rating is 1 (very unsatisfied) to 5 (very satisfied)")
    async with conn.transaction():
        row = await _by_token(conn, report_id, token)
        if row["case_state"] not in ("closed", "evaluated"):
            raise Open311Error(409, f"request {report_id} is not closed yet; answer when it is")
        answered = await (await conn.execute(
            "INSERT INTO city.report_feedback (report_id, case_id, fixed, rating) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING report_id", [report_id, row["case_id"], fixed, rating])).fetchone()
        if answered is None:
            raise Open311Error(409, f"request {report_id} was already answered for this case")
        await _note(conn, report_id, "feedback", ("市民确认已解决 the reporter says it is fixed" if fixed
                                                   else "市民反映未解决 the reporter says it is not fixed")
                    + (f", {rating}/5" if rating else ""))
        if not fixed:
            return {**await _reopen(conn, row, "回访未解决 not fixed, said the follow-up", settings), "fixed": False}
    return {"service_request_id": str(report_id), "fixed": True}


# ---------------------------------------------------------------- demo compounds

DEMO_COMPOUNDS_SQL = """
INSERT INTO city.residential_compound (name, community_code, geom)
SELECT cm.name || row_number() OVER (PARTITION BY cm.code ORDER BY g.bgcode) || '号小区', cm.code,
       ST_Buffer(g.geom, -0.00012, 'join=mitre')
FROM (SELECT bgcode, geom FROM city.unit_grid ORDER BY md5(bgcode) LIMIT %s) g
JOIN city.community cm ON cm.code = left(g.bgcode, 12)
WHERE NOT EXISTS (SELECT 1 FROM city.residential_compound c WHERE ST_Intersects(c.geom, g.geom))
  AND GeometryType(ST_Buffer(g.geom, -0.00012, 'join=mitre')) = 'POLYGON'
"""


def seed_demo_compounds(conn: psycopg.Connection, count: int = 368) -> int:
    """The demo city has no residential compounds: `count` unit grids, chosen deterministically,
    each shrunk by ≈12 m, stand in for them (the seed city has 368)."""
    return conn.execute(DEMO_COMPOUNDS_SQL, [count]).rowcount
