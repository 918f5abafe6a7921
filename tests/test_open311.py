"""Citizen reports over Open311 GeoReport v2, against the real app and PostGIS: the service list,
submit → duplicate suggestion → merge → accept → case → close → "was this fixed?" → reopen, the
privacy rules (no name/phone/e-mail/address in public answers, compounds snapped), anonymity, the
rate limits, the reward rules, and bad input answered as Open311 error arrays."""

from __future__ import annotations

import io
import itertools
import xml.etree.ElementTree as ET

import numpy as np
import psycopg
import pytest
from PIL import ExifTags, Image, TiffImagePlugin
from psycopg.rows import dict_row

from gis.source_crs import gcj02_to_wgs84, wgs84_to_gcj02
from gis.standards import EVENT_CLASSES
from api.routers.open311 import report_settings
from ops.report_settings import ReportSettings
from ops.reports import seed_demo_compounds
from tests.conftest import bearer

API = "/open311/v2"
_devices = itertools.count(1)


@pytest.fixture(scope="module")
def reports_db(city_db: str) -> str:
    with psycopg.connect(city_db) as conn:
        if conn.execute("SELECT count(*) FROM city.residential_compound").fetchone()[0] == 0:
            seed_demo_compounds(conn)
    return city_db


@pytest.fixture(autouse=True)
def generous_limits(client, reports_db):
    """Limits high enough for the tests that are not about them; a test may replace them."""
    _use(client, ReportSettings(device_limit=1000, ip_limit=100_000))
    yield
    client.app.dependency_overrides.pop(report_settings, None)


def _use(client, settings: ReportSettings) -> None:
    """The Open311 routes read these settings instead of the environment's (FastAPI's dependency override)."""
    client.app.dependency_overrides[report_settings] = lambda: settings


def _rows(info: str, sql: str, params=()) -> list[dict]:
    with psycopg.connect(info, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def _free_points(info: str, count: int, offset: int) -> list[dict]:
    """Points at the centre of unit grids that hold no residential compound, far apart."""
    return _rows(info, """
        SELECT g.bgcode, ST_X(ST_PointOnSurface(g.geom)) AS lon, ST_Y(ST_PointOnSurface(g.geom)) AS lat
        FROM city.unit_grid g
        WHERE NOT EXISTS (SELECT 1 FROM city.residential_compound c WHERE ST_Intersects(c.geom, g.geom))
        ORDER BY md5(g.bgcode || 'reports') OFFSET %s LIMIT %s""", [offset, count])


def _shifted(point: dict, east_m: float, north_m: float = 0.0) -> tuple[float, float]:
    lat = point["lat"] + north_m / 110_574
    return point["lon"] + east_m / (111_320 * np.cos(np.radians(point["lat"]))), lat


def _photo(lon: float | None = None, lat: float | None = None, size=(2400, 1800)) -> bytes:
    def dms(value: float):
        d = int(value)
        m = int((value - d) * 60)
        return tuple(TiffImagePlugin.IFDRational(v) for v in (d, m, ((value - d) * 60 - m) * 60))

    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestPhone"
    exif[ExifTags.Base.Artist] = "张三 Zhang San"
    if lon is not None:
        exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: dms(lat),
                                      ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: dms(lon)}
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buffer, "JPEG", exif=exif, quality=90)
    return buffer.getvalue()


def _post(client, service_code="SR02", lon=None, lat=None, photos=(), fmt="json", **fields):
    data = {"service_code": service_code, "long": lon, "lat": lat, "device_id": f"device-{next(_devices)}", **fields}
    data = {k: str(v) for k, v in data.items() if v is not None}
    files = [("media", (f"p{i}.jpg", content, "image/jpeg")) for i, content in enumerate(photos)]
    return client.post(f"{API}/requests.{fmt}", data=data, files=files or None)


def _submit(client, point_or_lonlat, service_code="SR02", **fields) -> dict:
    lon, lat = (point_or_lonlat["lon"], point_or_lonlat["lat"]) if isinstance(point_or_lonlat, dict) else point_or_lonlat
    response = _post(client, service_code, lon, lat, **fields)
    assert response.status_code == 200, response.text
    return response.json()[0]


def _get(client, request_id: str) -> dict:
    response = client.get(f"{API}/requests/{request_id}.json")
    assert response.status_code == 200, response.text
    return response.json()[0]


def test_services_list_three_categories_and_fifteen_items_in_json_and_xml(client):
    services = client.get(f"{API}/services.json").json()
    assert len(services) == 15 and {s["group"] for s in services} == {"市容环卫", "公共设施", "公厕管理"}
    assert len({s["service_code"] for s in services}) == 15
    xml = ET.fromstring(client.get(f"{API}/services.xml").content)
    assert xml.tag == "services" and [e.findtext("service_code") for e in xml.findall("service")] == [s["service_code"] for s in services]
    definition = client.get(f"{API}/services/PF01.json").json()
    assert definition["attributes"][0]["code"] == "cover_state" and definition["attributes"][0]["required"] is True
    assert any(s["metadata"] for s in services) and not all(s["metadata"] for s in services)
    from ops.open311 import SERVICES
    assert {s.event_class_code for s in SERVICES} <= {code for code, *_ in EVENT_CLASSES}
    assert client.get(f"{API}/services/XX99.json").status_code == 404
    wrong = client.get(f"{API}/services.json", params={"jurisdiction_id": "elsewhere"})
    assert wrong.status_code == 404 and wrong.json()[0]["code"] == 404


def test_a_report_from_submission_to_reopen(client, reports_db, keys):
    first_point, far_point = _free_points(reports_db, 2, offset=0)
    photo = _photo(first_point["lon"], first_point["lat"])
    answer = _submit(client, first_point, "PF01", **{"attribute[cover_state]": "missing"},
                     description="井盖缺失，很危险", photos=[photo])
    request_id, token = answer["service_request_id"], answer["token"]
    assert client.get(f"{API}/tokens/{token}.json").json() == [{"service_request_id": request_id, "token": token}]

    # routed: unit grid, responsible unit, deadline of the item's class
    public = _get(client, request_id)
    case = _rows(reports_db, """
        SELECT f.*, u.name AS unit FROM city.citizen_report r JOIN city.case_file f ON f.id = r.case_id
        LEFT JOIN city.responsible_unit u ON u.id = r.responsible_unit_id WHERE r.id = %s""", [int(request_id)])[0]
    assert case["source"] == "public" and case["bgcode"] == first_point["bgcode"] and case["event_class_code"] == "0402"
    assert public["agency_responsible"] == case["unit"] and public["agency_responsible"]
    assert public["expected_datetime"] == case["deadline_at"].isoformat(timespec="seconds")
    assert (public["status"], public["detailed_status"], public["overdue"]) == ("open", "OPEN", False)
    assert abs(public["lat"] - first_point["lat"]) < 1e-5 and abs(public["long"] - first_point["lon"]) < 1e-5

    # the photo: stored, resized, upright, its EXIF (GPS, maker, artist) gone
    stored = client.get(public["media_url"].replace("http://testserver", ""))
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(stored.content))
    assert max(image.size) == 1000 and dict(image.getexif()) == {}
    assert b"Zhang San" not in stored.content and b"TestPhone" not in stored.content

    # the same problem 20 m away: suggested before submitting; not for another item, nor 80 m away
    near = _shifted(first_point, 20)
    suggested = client.get(f"{API}/requests/nearby.json", params={"service_code": "PF01", "long": near[0], "lat": near[1]}).json()
    assert [s["service_request_id"] for s in suggested] == [request_id]
    assert client.get(f"{API}/requests/nearby.json", params={"service_code": "SR02", "long": near[0], "lat": near[1]}).json() == []
    away = _shifted(first_point, 0, 80)
    assert request_id not in [s["service_request_id"] for s in client.get(
        f"{API}/requests/nearby.json", params={"service_code": "PF01", "long": away[0], "lat": away[1]}).json()]

    # submitted anyway, then merged by an operator: "me too"
    second = _submit(client, near, "PF01", **{"attribute[cover_state]": "missing"}, account_id="citizen-2")
    operator = bearer(keys["reviewer"])
    assert client.post(f"/reports/{second['service_request_id']}/merge", json={"into": int(request_id)}).status_code == 401
    merged = client.post(f"/reports/{second['service_request_id']}/merge", json={"into": int(request_id)}, headers=operator)
    assert merged.status_code == 200, merged.text
    assert _get(client, request_id)["me_too"] == 1
    duplicate = _get(client, second["service_request_id"])
    assert (duplicate["status"], duplicate["detailed_status"], duplicate["duplicate_of"]) == ("closed", "DUPLICATE", request_id)
    assert client.post(f"/reports/{second['service_request_id']}/accept", headers=operator).status_code == 409

    # accepted → the case is filed; closed → Open311 closed / FIXED
    accepted = client.post(f"/reports/{request_id}/accept", headers=operator)
    assert accepted.status_code == 200, accepted.text
    assert (_get(client, request_id)["detailed_status"]) == "INVESTIGATING"
    assert client.post(f"/reports/{request_id}/close", json={}, headers=operator).status_code == 200
    closed = _get(client, request_id)
    assert (closed["status"], closed["detailed_status"], closed["expected_datetime"]) == ("closed", "FIXED", None)
    listed = client.get(f"{API}/requests.json", params={"service_request_id": request_id, "status": "open"}).json()
    assert listed[0]["status"] == "closed"  # ids override every other filter, as the spec says
    assert request_id in [r["service_request_id"] for r in client.get(f"{API}/requests.json", params={"status": "closed", "service_code": "PF01"}).json()]
    assert request_id not in [r["service_request_id"] for r in client.get(f"{API}/requests.json", params={"status": "open"}).json()]

    # "was this fixed?" — no: the report reopens as a new, linked case
    wrong_token = client.post(f"{API}/requests/{request_id}/feedback.json", data={"token": "guess", "fixed": "false"})
    assert wrong_token.status_code == 404
    feedback = client.post(f"{API}/requests/{request_id}/feedback.json", data={"token": token, "fixed": "false", "rating": "2"})
    assert feedback.status_code == 200, feedback.text
    reopened = _get(client, request_id)
    assert reopened["status"] == "open" and reopened["case_no"] != closed["case_no"]
    cases = _rows(reports_db, "SELECT case_id FROM city.report_case WHERE report_id = %s", [int(request_id)])
    assert len(cases) == 2

    # accepted again (no second reward), closed again, and reopened by hand within the 7 days
    again = client.post(f"/reports/{request_id}/accept", headers=operator).json()
    assert again["reward_fen"] == 0
    client.post(f"/reports/{request_id}/close", json={}, headers=operator)
    assert client.post(f"{API}/requests/{request_id}/feedback.json", data={"token": token, "fixed": "true", "rating": "5"}).status_code == 200
    assert client.post(f"{API}/requests/{request_id}/feedback.json", data={"token": token, "fixed": "true"}).status_code == 409
    reopen = client.post(f"{API}/requests/{request_id}/reopen.json", data={"token": token, "reason": "井盖又丢了"})
    assert reopen.status_code == 200, reopen.text and _get(client, request_id)["status"] == "open"

    # the reporter sees each step
    steps = client.get(f"{API}/requests/{request_id}/updates.json").json()
    kinds = [s.get("kind") or s["detailed_status"] for s in steps]
    for step in ("submitted", "me_too", "accepted", "reward", "INVESTIGATING", "FIXED", "feedback", "reopened"):
        assert step in kinds, (step, kinds)
    figures = client.get("/reports/figures").json()
    assert figures["reports_today"] >= 2 and 0 <= figures["satisfaction"] <= 1 and len(figures["items_today"]) == 15


def test_reopening_more_than_seven_days_after_closure_is_refused(client, reports_db, keys):
    point = _free_points(reports_db, 1, offset=10)[0]
    answer = _submit(client, point, "SR01", description="路面油污")
    request_id = answer["service_request_id"]
    operator = bearer(keys["reviewer"])
    client.post(f"/reports/{request_id}/accept", headers=operator)
    client.post(f"/reports/{request_id}/close", json={}, headers=operator)
    with psycopg.connect(reports_db) as conn:  # the case closed eight days ago
        conn.execute("UPDATE city.case_file SET reported_at = reported_at - interval '9 days', filed_at = filed_at - interval '9 days', "
                     "closed_at = closed_at - interval '8 days' WHERE id = (SELECT case_id FROM city.citizen_report WHERE id = %s)",
                     [int(request_id)])
    refused = client.post(f"{API}/requests/{request_id}/reopen.xml", data={"token": answer["token"], "reason": "又脏了"})
    assert refused.status_code == 409
    error = ET.fromstring(refused.content).find("error")
    assert error.findtext("code") == "409" and "more than 7 days" in error.findtext("description")
    assert _get(client, request_id)["status"] == "closed"


def test_public_answers_carry_no_personal_details_and_compounds_are_snapped(client, reports_db):
    compound = _rows(reports_db, """
        SELECT c.name, ST_X(c.public_point) AS px, ST_Y(c.public_point) AS py,
               ST_X(p) AS lon, ST_Y(p) AS lat
        FROM city.residential_compound c,
             LATERAL (SELECT ST_LineInterpolatePoint(ST_ExteriorRing(ST_Buffer(c.geom, -0.00003)), 0.3) AS p) q
        ORDER BY c.id OFFSET 7 LIMIT 1""")[0]
    private = {"first_name": "王", "last_name": "小明", "phone": "13912345678", "email": "wxm@example.cn",
               "address_string": "幸福花园 3栋2单元501室"}
    answer = _submit(client, (compound["lon"], compound["lat"]), "SR02",
                     description="楼下垃圾桶满了，联系我 13912345678 或 wxm@example.cn，王小明", **private)
    request_id = answer["service_request_id"]
    bodies = [client.get(f"{API}/requests/{request_id}.json").text, client.get(f"{API}/requests/{request_id}.xml").text,
              client.get(f"{API}/requests.json", params={"service_code": "SR02"}).text,
              client.get(f"{API}/requests/nearby.json", params={"service_code": "SR02", "long": compound["lon"], "lat": compound["lat"]}).text,
              client.get(f"{API}/requests/{request_id}/updates.json").text]
    assert all(request_id in body for body in bodies[:4])
    for body in bodies:
        for value in ("13912345678", "wxm@example.cn", "王小明", "小明", "3栋2单元501", "幸福花园"):
            assert value not in body, (value, body[:300])
    public = _get(client, request_id)
    assert (public["long"], public["lat"]) == (round(compound["px"], 6), round(compound["py"], 6))
    assert (public["long"], public["lat"]) != (round(compound["lon"], 6), round(compound["lat"], 6))
    assert public["address"] == compound["name"]
    stored = _rows(reports_db, "SELECT reporter_phone, ST_X(geom) AS lon FROM city.citizen_report WHERE id = %s", [int(request_id)])[0]
    assert stored["reporter_phone"] == "13912345678" and abs(stored["lon"] - compound["lon"]) < 1e-9  # operators keep them
    # the case is public too (the cases collection and its tiles): it sits at the compound's point
    case = _rows(reports_db, "SELECT f.id, ST_X(f.geom) AS lon, ST_Y(f.geom) AS lat FROM city.case_file f "
                             "JOIN city.citizen_report r ON r.case_id = f.id WHERE r.id = %s", [int(request_id)])[0]
    assert (case["lon"], case["lat"]) == pytest.approx((compound["px"], compound["py"]), abs=1e-9)
    feature = client.get(f"/collections/cases/items/{case['id']}").json()
    assert feature["geometry"]["coordinates"] == pytest.approx([compound["px"], compound["py"]], abs=1e-6)


def test_anonymous_reports_keep_nobody_and_earn_nothing(client, reports_db, keys):
    point = _free_points(reports_db, 1, offset=20)[0]
    answer = _submit(client, point, "SR04", anonymous="true", phone="13800000000", first_name="李", address_string="某小区")
    stored = _rows(reports_db, "SELECT reporter_key, reporter_phone, reporter_name, address_string, device_id, client_ip "
                               "FROM city.citizen_report WHERE id = %s", [int(answer["service_request_id"])])[0]
    assert set(stored.values()) == {None}
    accepted = client.post(f"/reports/{answer['service_request_id']}/accept", headers=bearer(keys["reviewer"])).json()
    assert accepted["reward_fen"] == 0 and "anonymous" in accepted["no_reward_reason"]
    with psycopg.connect(reports_db) as conn:  # its time limit has passed
        conn.execute("UPDATE city.case_file SET deadline_at = now() - interval '1 minute' "
                     "WHERE id = (SELECT case_id FROM city.citizen_report WHERE id = %s)", [int(answer["service_request_id"])])
    assert _get(client, answer["service_request_id"])["overdue"] is True


def test_rewards_once_per_reporter_place_item_and_day_never_for_duplicates(client, reports_db, keys):
    point = _free_points(reports_db, 1, offset=30)[0]
    operator = bearer(keys["reviewer"])
    who = {"account_id": "citizen-rewards", "phone": "13700000001"}
    a = _submit(client, point, "SR03", **who)
    b = _submit(client, _shifted(point, 5), "SR03", **who)          # same item, same grid, same day
    c = _submit(client, _shifted(point, 5), "SR04", **who)          # another item
    d = _submit(client, _shifted(point, 8), "SR03", account_id="someone-else")
    e = _submit(client, _shifted(point, 3), "SR03", account_id="me-too-farmer")
    rewards = {name: client.post(f"/reports/{r['service_request_id']}/accept", headers=operator).json()["reward_fen"]
               for name, r in (("a", a), ("b", b), ("c", c), ("d", d))}
    assert rewards == {"a": 200, "b": 0, "c": 200, "d": 200}
    assert client.post(f"/reports/{a['service_request_id']}/accept", headers=operator).status_code == 409  # once per report
    client.post(f"/reports/{e['service_request_id']}/merge", json={"into": int(a["service_request_id"])}, headers=operator)
    assert client.post(f"/reports/{e['service_request_id']}/accept", headers=operator).status_code == 409
    paid = _rows(reports_db, "SELECT r.id FROM city.report_reward w JOIN city.citizen_report r ON r.id = w.report_id "
                             "WHERE r.id = ANY(%s)", [[int(x["service_request_id"]) for x in (a, b, c, d, e)]])
    assert sorted(row["id"] for row in paid) == sorted(int(x["service_request_id"]) for x in (a, c, d))


def test_rate_limits_per_device_and_per_ip_answer_429_with_retry_after(client, reports_db):
    _use(client, ReportSettings(device_limit=3, ip_limit=6, rate_window_s=600))
    point = _free_points(reports_db, 1, offset=40)[0]
    with psycopg.connect(reports_db) as conn:
        conn.execute("DELETE FROM city.report_rate WHERE key = 'ip:testclient'")
    statuses = [_post(client, "SR01", point["lon"], point["lat"], device_id="one-phone").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = _post(client, "SR01", point["lon"], point["lat"], device_id="one-phone")
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 600
    assert "this device" in limited.json()[0]["description"]
    # other devices from the same address: refused submissions counted too, the IP's sixth is its last
    others = [_post(client, "SR01", point["lon"], point["lat"]).status_code for _ in range(3)]
    assert others == [200, 429, 429]
    assert "this address" in _post(client, "SR01", point["lon"], point["lat"]).json()[0]["description"]


def _count(info: str) -> int:
    return _rows(info, "SELECT count(*) AS n FROM city.citizen_report")[0]["n"]


@pytest.mark.parametrize("fields, photo, status, reason", [
    ({"service_code": ""}, None, 400, "service_code is required"),
    ({"service_code": "XX99"}, None, 400, "unknown service_code"),
    ({"lon": 100.0, "lat": 30.0}, None, 400, "in no unit grid of the city"),
    ({"description": "脏" * 4001}, None, 400, "at most 4,000"),
    ({"lat": None}, None, 400, "lat and long are required"),
    ({"lat": "north"}, None, 400, "lat must be a number"),
    ({"service_code": "PF01"}, None, 400, "attribute[cover_state] is required"),
    ({"service_code": "PF01", "attribute[cover_state]": "stolen"}, None, 400, "must be one of"),
    ({}, b"%PDF-1.4 not a photo at all", 415, "not a readable image"),
    ({}, "oversized", 413, "at most"),
    ({"crs": "EPSG:4548"}, None, 400, "projected"),
    ({"jurisdiction_id": "beijing"}, None, 404, "unknown jurisdiction_id"),
])
def test_bad_input_is_an_open311_error_and_nothing_is_written(client, reports_db, fields, photo, status, reason):
    point = _free_points(reports_db, 1, offset=50)[0]
    if photo == "oversized":
        _use(client, ReportSettings(device_limit=1000, ip_limit=100_000, max_photo_bytes=50_000))
        photo = _photo(size=(1600, 1200))
    before = _count(reports_db)
    args = {"service_code": "SR02", "lon": point["lon"], "lat": point["lat"], **fields}
    response = _post(client, args.pop("service_code"), args.pop("lon"), args.pop("lat"), photos=[photo] if photo else (), **args)
    assert response.status_code == status, response.text
    errors = response.json()
    assert isinstance(errors, list) and errors[0]["code"] == status and reason in errors[0]["description"]
    assert _count(reports_db) == before


def test_gcj02_is_accepted_when_declared_and_detected_when_not(client, reports_db):
    point = _free_points(reports_db, 1, offset=60)[0]
    gx, gy = (float(v[0]) for v in wgs84_to_gcj02(np.array([point["lon"]]), np.array([point["lat"]])))
    # declared: the report lies where the phone really was
    declared = _submit(client, (gx, gy), "SR01", crs="gcj02")
    public = _get(client, declared["service_request_id"])
    assert abs(public["long"] - point["lon"]) < 2e-5 and abs(public["lat"] - point["lat"]) < 2e-5
    # undeclared, with a photo whose GPS says where the phone was: refused with the hint
    before = _count(reports_db)
    refused = _post(client, "SR01", gx, gy, photos=[_photo(point["lon"], point["lat"])])
    assert refused.status_code == 400 and "crs=gcj02" in refused.json()[0]["description"]
    # the same photo with the right, WGS84 location is fine; so is a GCJ-02 point that matches no photo
    assert _post(client, "SR01", point["lon"], point["lat"], photos=[_photo(point["lon"], point["lat"])]).status_code == 200
    assert _count(reports_db) == before + 1
    back = gcj02_to_wgs84(np.array([gx]), np.array([gy]))
    assert abs(float(back[0][0]) - point["lon"]) < 1e-6


def test_photos_can_be_uploaded_first_and_named_by_media_url(client, reports_db):
    point = _free_points(reports_db, 1, offset=70)[0]
    uploaded = client.post(f"{API}/media.json", files={"media": ("a.png", _png(), "image/png")})
    assert uploaded.status_code == 200, uploaded.text
    media_url = uploaded.json()["media_url"]
    answer = _submit(client, point, "SR05", media_url=media_url)
    assert _get(client, answer["service_request_id"])["media_url"] == media_url
    again = _post(client, "SR05", point["lon"], point["lat"], media_url=media_url)  # a photo belongs to one report
    assert again.status_code == 400 and "not yet used" in again.json()[0]["description"]
    foreign = _post(client, "SR05", point["lon"], point["lat"], media_url="http://example.com/x.jpg")
    assert foreign.status_code == 400


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (640, 480), (10, 200, 30, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_georeport_client_lists_services_and_reads_requests(live_server, reports_db):
    import httpx
    from georeport import GeoReport

    point = _free_points(reports_db, 1, offset=80)[0]
    posted = httpx.post(f"{live_server}{API}/requests.json", data={
        "service_code": "PT01", "lat": str(point["lat"]), "long": str(point["lon"]), "description": "公厕很脏",
        "attribute[toilet_name]": "运河公厕", "device_id": "georeport-test"})
    assert posted.status_code == 200, posted.text
    request_id = posted.json()[0]["service_request_id"]
    for fmt in ("json", "xml"):
        client = GeoReport(f"{live_server}{API}", jurisdiction="suqian.cityops", output_format=fmt)
        services = client.get_service_list()
        assert len(services) == 15 and services[0]["service_code"] == "SR01"
        definition = client.get_service_definition("PF01")
        assert "cover_state" in str(definition)
        one = client.get_service_request(request_id)
        assert one["service_request_id"] == request_id and one["status"] == "open" and one["service_code"] == "PT01"
        listed = client.get_service_requests(service_code="PT01", status="open")
        listed = listed if isinstance(listed, list) else [listed]
        assert request_id in [r["service_request_id"] for r in listed]


def test_moderation_keeps_the_original_and_tells_the_reporter_why(client, reports_db, keys):
    point = _free_points(reports_db, 1, offset=90)[0]
    operator = bearer(keys["reviewer"])
    answer = _submit(client, point, "SR04", description="楼道小广告，物业张经理不管，垃圾物业")
    request_id = answer["service_request_id"]
    moderated = client.post(f"/reports/{request_id}/moderate", headers=operator,
                            json={"description": "楼道小广告", "reason": "去除对个人的评论 personal remarks removed"})
    assert moderated.status_code == 200, moderated.text
    public = _get(client, request_id)
    assert public["description"] == "楼道小广告" and "personal remarks removed" in public["status_notes"]
    steps = client.get(f"{API}/requests/{request_id}/updates.json").json()
    assert any(s.get("kind") == "moderated" and "personal remarks removed" in s["description"] for s in steps)
    client.post(f"/reports/{request_id}/moderate", headers=operator, json={"description": "小广告", "reason": "shorter"})
    kept = _rows(reports_db, "SELECT original_description FROM city.citizen_report WHERE id = %s", [int(request_id)])[0]
    assert kept["original_description"] == "楼道小广告，物业张经理不管，垃圾物业"  # the citizen's own words, not the first edit

    rejected = _submit(client, _shifted(point, 0, 200), "SR04", description="邻居家里装修吵")
    assert client.post(f"/reports/{rejected['service_request_id']}/reject", headers=operator, json={"reason": ""}).status_code == 400
    client.post(f"/reports/{rejected['service_request_id']}/reject", headers=operator,
                json={"reason": "不属于城市管理范围 not a city-management matter"})
    public = _get(client, rejected["service_request_id"])
    assert (public["status"], public["detailed_status"]) == ("closed", "NO_FURTHER_ACTION")
    assert "not a city-management matter" in public["status_notes"]
    state = _rows(reports_db, "SELECT f.state FROM city.citizen_report r JOIN city.case_file f ON f.id = r.case_id "
                              "WHERE r.id = %s", [int(rejected["service_request_id"])])[0]["state"]
    assert state == "voided"


def test_operators_act_only_in_their_districts(client, reports_db, keys):
    from gis.db import open_connection
    from gis.keys import create_key

    point = _free_points(reports_db, 1, offset=100)[0]
    answer = _submit(client, point, "SR01")
    district = point["bgcode"][:6]
    other = next(code for code in ("321302", "321311", "321322") if code != district)
    with open_connection(reports_db) as conn:
        elsewhere, _ = create_key(conn, "reviewer", [other], "reviewer elsewhere")
        here, _ = create_key(conn, "reviewer", [district], "reviewer here")
        conn.commit()
    refused = client.post(f"/reports/{answer['service_request_id']}/accept", headers=bearer(elsewhere))
    assert refused.status_code == 403 and _get(client, answer["service_request_id"])["detailed_status"] == "OPEN"
    assert client.post(f"/reports/{answer['service_request_id']}/accept", headers=bearer(keys["viewer"])).status_code == 403
    assert client.post(f"/reports/{answer['service_request_id']}/accept", headers=bearer(here)).status_code == 200


def test_demo_compounds_from_the_command_line_are_added_once(reports_db):
    import os
    import subprocess
    import sys

    compounds = _rows(reports_db, "SELECT count(*) AS n, count(DISTINCT community_code) AS communities, "
                                  "bool_and(ST_Within(public_point, geom)) AS inside FROM city.residential_compound")[0]
    assert compounds["n"] > 300 and compounds["communities"] > 50 and compounds["inside"]
    result = subprocess.run([sys.executable, "-m", "api.cli", "reports", "compounds", "--count", "20"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "CITYOPS_DATABASE_URL": reports_db})
    assert result.returncode == 0 and "0 residential compounds added" in result.stdout + result.stderr, result.stderr


def test_a_gcj02_point_that_falls_off_the_grid_is_explained_and_accepted_once_declared(client, reports_db):
    grids = _rows(reports_db, "SELECT ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat "
                              "FROM city.unit_grid g WHERE NOT EXISTS (SELECT 1 FROM city.residential_compound c "
                              "WHERE ST_Intersects(c.geom, g.geom)) ORDER BY md5(bgcode || 'gcj') LIMIT 3000")
    lon, lat = np.array([g["lon"] for g in grids]), np.array([g["lat"] for g in grids])
    glon, glat = wgs84_to_gcj02(lon, lat)
    off_grid = _rows(reports_db, """
        SELECT i FROM unnest(%s::float8[], %s::float8[]) WITH ORDINALITY AS u(x, y, i)
        WHERE NOT EXISTS (SELECT 1 FROM city.unit_grid g WHERE ST_Intersects(g.geom, ST_SetSRID(ST_MakePoint(u.x, u.y), 4490)))
        LIMIT 1""", [glon.tolist(), glat.tolist()])
    assert off_grid, "no grid point of the demo city falls off the grid once shifted to GCJ-02"
    i = off_grid[0]["i"] - 1
    before = _count(reports_db)
    refused = _post(client, "SR02", float(glon[i]), float(glat[i]))
    assert refused.status_code == 400 and "send crs=gcj02" in refused.json()[0]["description"]
    assert _count(reports_db) == before
    accepted = _submit(client, (float(glon[i]), float(glat[i])), "SR02", crs="gcj02")
    public = _get(client, accepted["service_request_id"])
    assert abs(public["long"] - lon[i]) < 2e-5 and abs(public["lat"] - lat[i]) < 2e-5


def test_posting_to_requests_xml_answers_in_xml_errors_too(client, reports_db):
    point = _free_points(reports_db, 1, offset=110)[0]
    answer = ET.fromstring(_post(client, "SR01", point["lon"], point["lat"], fmt="xml").content)
    assert answer.tag == "service_requests" and answer.find("request/service_request_id").text.isdigit()
    assert len(answer.find("request/token").text) >= 20
    refused = _post(client, "NOPE", point["lon"], point["lat"], fmt="xml")
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/xml")
    assert ET.fromstring(refused.content).find("error/code").text == "400"
