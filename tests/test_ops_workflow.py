"""Live operations through the real API and PostGIS: readings → alarm → case → dispatch → handled →
checked → closed → evaluated; bad readings answered row by row; steps out of order, other units'
and other districts' cases refused; the SLA clock across a weekend, a holiday and a make-up day."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.rows import dict_row

from gis.db import open_connection
from gis.keys import create_key
from layers.demo.load import WORKING_CALENDAR
from ops.calendar import WorkingCalendar, parse_calendar
from ops.cases import sweep_deadlines
from tests.conftest import bearer

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _demo_calendar() -> WorkingCalendar:
    periods, days = parse_calendar(yaml.safe_load(WORKING_CALENDAR.read_text(encoding="utf-8")))
    by_day: dict[int, list] = {}
    for weekday, begins, ends in periods:
        by_day.setdefault(weekday, []).append((begins, ends))
    return WorkingCalendar({k: tuple(v) for k, v in by_day.items()}, {d: w for d, w, _ in days})


@pytest.mark.parametrize("start, hours, deadline", [
    ("2026-11-27 17:30", 1, "2026-11-30 09:00"),    # Friday evening → over the weekend
    ("2026-09-30 17:00", 2, "2026-10-08 09:30"),    # into 国庆节: a week of holidays
    ("2026-10-09 17:00", 2, "2026-10-10 09:30"),    # the make-up Saturday works
    ("2026-11-28 10:00", 1, "2026-11-30 09:30"),    # reported on a Saturday: waits for Monday
    ("2026-11-30 11:30", 1, "2026-11-30 14:00"),    # over the lunch break
    ("2026-11-30 08:30", 24, "2026-12-02 18:00"),   # three full working days of 8 h
])
def test_time_limits_count_only_working_hours(start, hours, deadline):
    calendar = _demo_calendar()
    begin = datetime.fromisoformat(start).replace(tzinfo=SHANGHAI)
    end = calendar.add_working_hours(begin, hours)
    assert end == datetime.fromisoformat(deadline).replace(tzinfo=SHANGHAI)
    assert calendar.working_hours_between(begin, end) == pytest.approx(hours)


def test_a_calendar_without_working_days_is_refused():
    with pytest.raises(Exception, match="no working time"):
        WorkingCalendar({}, {}).add_working_hours(datetime(2026, 1, 1, tzinfo=timezone.utc), 1)


@pytest.fixture(scope="module")
def scene(city_db: str) -> dict:
    """A cover in 宿城区 whose tilt datastream we drive, the unit its grid routes to, and keys."""
    with open_connection(city_db) as conn:
        cover = conn.execute("""
            SELECT s.objcode, d.id AS tilt, (SELECT id FROM city.datastream WHERE objcode = s.objcode AND observed_property = 'battery_pct') AS battery,
                   coalesce((SELECT r.responsible_unit_id FROM city.responsible_grid r WHERE ST_Intersects(r.geom, c.geom) ORDER BY r.code LIMIT 1),
                            g.responsible_unit_id) AS unit_id
            FROM city.manhole_sensor s JOIN city.component c USING (objcode) JOIN city.unit_grid g ON g.bgcode = c.bgcode
            JOIN city.datastream d ON d.objcode = s.objcode AND d.observed_property = 'tilt_deg'
            WHERE c.district_code = '321302' AND s.state = 'normal'
              AND NOT EXISTS (SELECT 1 FROM city.alarm a WHERE a.objcode = s.objcode AND a.status <> 'cleared')
            ORDER BY s.objcode OFFSET 7 LIMIT 1""").fetchone()
        unit = conn.execute("SELECT code FROM city.responsible_unit WHERE id = %s", [cover["unit_id"]]).fetchone()["code"]
        other_unit = conn.execute("SELECT code FROM city.responsible_unit WHERE district_code = '321302' AND id <> %s ORDER BY id LIMIT 1",
                                  [cover["unit_id"]]).fetchone()["code"]
        suyu_unit = conn.execute("SELECT code FROM city.responsible_unit WHERE district_code = '321311' ORDER BY id LIMIT 1").fetchone()["code"]
        made = {}
        for name, role, districts, unit_code in [
            ("dispatcher", "dispatcher", [], None), ("dispatcher_suyu", "dispatcher", ["321311"], None),
            ("field", "field_unit", [], unit), ("other_field", "field_unit", [], other_unit),
            ("supervisor", "supervisor", [], None), ("device", "device", [], None), ("viewer", "viewer", [], None)]:
            made[name], _ = create_key(conn, role, districts, f"test {name}", unit_code)
        conn.commit()
    return {**cover, "unit": unit, "other_unit": other_unit, "suyu_unit": suyu_unit, "keys": made}


def _rows(stream: int, start: datetime, values: list, step_s: int = 60) -> dict:
    return {"Datastream": {"@iot.id": stream}, "components": ["phenomenonTime", "result"],
            "dataArray": [[(start + timedelta(seconds=step_s * i)).isoformat(), v] for i, v in enumerate(values)]}


def test_a_batch_with_bad_rows_lands_the_good_ones_and_reports_each_bad_one(client, scene, city_db):
    now = datetime.now(timezone.utc)
    body = [_rows(scene["battery"], now - timedelta(minutes=30), [80, "eighty", 81]),
            {"Datastream": {"@iot.id": 999999999}, "components": ["phenomenonTime", "result"], "dataArray": [[now.isoformat(), 1.0]]},
            _rows(scene["battery"], now + timedelta(days=1), [70]),
            _rows(scene["battery"], now - timedelta(days=900), [70]),
            _rows(scene["battery"], now - timedelta(minutes=20), [140, None])]
    response = client.post("/sta/v1.1/CreateObservations", json=body, headers=bearer(scene["keys"]["device"]))
    assert response.status_code == 201, response.text
    results = response.json()
    assert len(results) == 8
    ok = [r for r in results if not r.startswith("error")]
    assert len(ok) == 2 and all("/Observations(" in r for r in ok)
    reasons = [r for r in results if r.startswith("error")]
    for fragment in ("not a number", "unknown datastream 999999999", "future", "older than", "outside 0..100", "None"):
        assert any(fragment in r for r in reasons), (fragment, reasons)
    with open_connection(city_db) as conn:
        latest = conn.execute("SELECT result FROM city.sensor_latest WHERE datastream_id = %s", [scene["battery"]]).fetchone()
        battery = conn.execute("SELECT battery_pct FROM city.manhole_cover_v WHERE objcode = %s", [scene["objcode"]]).fetchone()
    assert latest["result"] == 81 and battery["battery_pct"] == 81


def test_readings_need_a_device_key(client, scene):
    body = [_rows(scene["battery"], datetime.now(timezone.utc), [50])]
    assert client.post("/sta/v1.1/CreateObservations", json=body).status_code == 401
    assert client.post("/sta/v1.1/CreateObservations", json=body, headers=bearer(scene["keys"]["dispatcher"])).status_code == 403


def _step(client, key, case_id, action, **body):
    return client.post(f"/cases/{case_id}/{action}", json=body, headers=bearer(key))


def test_reading_to_alarm_to_case_through_the_whole_workflow(client, scene, city_db):
    keys = scene["keys"]
    start = datetime.now(timezone.utc) - timedelta(minutes=10)
    # one reading over the threshold is not enough (hold: 2 readings)
    first = client.post("/sta/v1.1/CreateObservations", json=[_rows(scene["tilt"], start, [2.0, 25.0])], headers=bearer(keys["device"]))
    assert first.status_code == 201
    with open_connection(city_db) as conn:
        assert conn.execute("SELECT count(*) AS n FROM city.alarm WHERE objcode = %s AND status <> 'cleared'", [scene["objcode"]]).fetchone()["n"] == 0
    client.post("/sta/v1.1/CreateObservations", json=[_rows(scene["tilt"], start + timedelta(minutes=2), [26.0, 27.0, 30.0])],
                headers=bearer(keys["device"]))
    with open_connection(city_db) as conn:
        alarms = conn.execute("SELECT id, alarm_type, status FROM city.alarm WHERE objcode = %s AND status <> 'cleared'", [scene["objcode"]]).fetchall()
        assert [a["alarm_type"] for a in alarms] == ["displacement"]
        case = conn.execute("SELECT id, state, source, responsible_unit_id FROM city.case_file WHERE alarm_id = %s", [alarms[0]["id"]]).fetchone()
        assert conn.execute("SELECT state FROM city.manhole_sensor WHERE objcode = %s", [scene["objcode"]]).fetchone()["state"] == "alarm"
    assert case["state"] == "reported" and case["source"] == "sensor" and case["responsible_unit_id"] == scene["unit_id"]
    case_id = case["id"]

    # steps out of order and by the wrong role are refused, with nothing written
    assert _step(client, keys["dispatcher"], case_id, "close").status_code == 409
    assert _step(client, keys["field"], case_id, "file").status_code == 403
    assert _step(client, keys["dispatcher"], case_id, "fly").status_code == 400
    # another district's dispatcher cannot even see it
    assert client.get(f"/cases/{case_id}", headers=bearer(keys["dispatcher_suyu"])).status_code == 404
    assert _step(client, keys["dispatcher_suyu"], case_id, "file").status_code == 404

    assert _step(client, keys["dispatcher"], case_id, "file", note="核实: 井盖倾斜").status_code == 200
    outside = _step(client, keys["dispatcher"], case_id, "dispatch", unit=scene["suyu_unit"])
    assert outside.status_code == 400 and "district" in outside.json()["description"]
    dispatched = _step(client, keys["dispatcher"], case_id, "dispatch").json()
    assert dispatched["state"] == "dispatched" and dispatched["responsible_unit_code"] == scene["unit"]
    assert dispatched["deadline_at"] > dispatched["warn_at"] > dispatched["dispatched_at"]

    # only the unit the case was given may work on it; others do not see it
    assert client.get(f"/cases/{case_id}", headers=bearer(keys["other_field"])).status_code == 404
    assert _step(client, keys["other_field"], case_id, "accept").status_code == 404
    assert _step(client, keys["field"], case_id, "accept").status_code == 200
    handled = _step(client, keys["field"], case_id, "handle", note="井盖已复位", photos=["https://example.org/p/1.jpg"])
    assert handled.status_code == 200 and handled.json()["state"] == "handled"
    assert _step(client, keys["field"], case_id, "close").status_code == 403
    # a failed check sends it back (rework), a passed one allows closing
    assert _step(client, keys["dispatcher"], case_id, "check").status_code == 400
    assert _step(client, keys["dispatcher"], case_id, "check", passed=False, note="仍倾斜").json()["state"] == "processing"
    _step(client, keys["field"], case_id, "handle", note="更换井盖")
    assert _step(client, keys["dispatcher"], case_id, "check", passed=True).json()["state"] == "checked"
    assert _step(client, keys["dispatcher"], case_id, "close").json()["state"] == "closed"
    assert _step(client, keys["supervisor"], case_id, "evaluate", evaluation=7).status_code == 400
    final = _step(client, keys["supervisor"], case_id, "evaluate", evaluation=5).json()
    assert final["state"] == "evaluated" and final["overdue"] is False

    history = client.get(f"/cases/{case_id}", headers=bearer(keys["viewer"])).json()["events"]
    assert [e["action"] for e in history] == ["report", "file", "dispatch", "accept", "handle", "check", "handle", "check", "close", "evaluate"]
    assert all(e["at"] and e["actor"] for e in history)
    assert history[4]["details"] == {"photos": ["https://example.org/p/1.jpg"]}

    # the cover comes back: the alarm clears after two readings under the clear threshold
    client.post("/sta/v1.1/CreateObservations", json=[_rows(scene["tilt"], start + timedelta(minutes=6), [1.0, 1.5])], headers=bearer(keys["device"]))
    with open_connection(city_db) as conn:
        assert conn.execute("SELECT status FROM city.alarm WHERE id = %s", [alarms[0]["id"]]).fetchone()["status"] == "cleared"
        assert conn.execute("SELECT state FROM city.manhole_sensor WHERE objcode = %s", [scene["objcode"]]).fetchone()["state"] == "normal"


def _new_case(client, key, lon, lat, event_class="0101"):
    response = client.post("/cases", json={"lon": lon, "lat": lat, "event_class_code": event_class, "description": "道路不洁"},
                           headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


def _point(city_db: str, district: str) -> tuple[float, float]:
    with open_connection(city_db) as conn:
        row = conn.execute("SELECT ST_X(ST_PointOnSurface(geom)) AS x, ST_Y(ST_PointOnSurface(geom)) AS y FROM city.unit_grid "
                           "WHERE district_code = %s ORDER BY bgcode OFFSET 3 LIMIT 1", [district]).fetchone()
    return row["x"], row["y"]


def test_exceptional_steps_need_a_reason_and_a_supervisor_and_are_counted(client, scene, city_db):
    keys = scene["keys"]
    case = _new_case(client, keys["dispatcher"], *_point(city_db, "321302"))
    assert case["events"][0]["actor"] == "test dispatcher"
    assert _step(client, keys["supervisor"], case["id"], "void").status_code == 400           # no reason
    assert _step(client, keys["dispatcher"], case["id"], "void", reason="重复").status_code == 403
    _step(client, keys["dispatcher"], case["id"], "file")
    dispatched = _step(client, keys["dispatcher"], case["id"], "dispatch").json()
    extended = _step(client, keys["supervisor"], case["id"], "extend", reason="雨天", hours=4).json()
    assert extended["deadline_at"] > dispatched["deadline_at"]
    deferred = _step(client, keys["supervisor"], case["id"], "defer", reason="等待配件").json()
    assert deferred["state"] == "deferred"
    assert _step(client, keys["field"], case["id"], "accept").status_code in (404, 409)
    resumed = _step(client, keys["dispatcher"], case["id"], "resume").json()
    assert resumed["state"] == "dispatched"
    returned = _step(client, keys["supervisor"], case["id"], "return", reason="非本单位职责").json()
    assert returned["state"] == "filed" and returned["responsible_unit_id"] is None
    queue = client.get("/cases", params={"unrouted": True}, headers=bearer(keys["dispatcher"])).json()["cases"]
    assert case["id"] in [c["id"] for c in queue]
    needs_unit = _step(client, keys["dispatcher"], case["id"], "dispatch")
    assert needs_unit.status_code == 409 and "manual dispatch queue" in needs_unit.json()["description"]
    assert _step(client, keys["dispatcher"], case["id"], "dispatch", unit=scene["other_unit"]).json()["responsible_unit_code"] == scene["other_unit"]
    events = client.get(f"/cases/{case['id']}", headers=bearer(keys["dispatcher"])).json()["events"]
    exceptional = [e for e in events if e["action"] in ("return", "void", "extend", "defer")]
    assert [e["action"] for e in exceptional] == ["extend", "defer", "return"]
    assert all(e["reason"] and e["approver"] == "test supervisor" for e in exceptional)


def test_district_scoped_keys_see_only_their_districts(client, scene, city_db):
    keys = scene["keys"]
    suyu = _new_case(client, keys["dispatcher_suyu"], *_point(city_db, "321311"))
    refused = client.post("/cases", json={"lon": _point(city_db, "321302")[0], "lat": _point(city_db, "321302")[1],
                                          "event_class_code": "0101"}, headers=bearer(keys["dispatcher_suyu"]))
    assert refused.status_code == 403
    listed = client.get("/cases", params={"limit": 1000}, headers=bearer(keys["dispatcher_suyu"])).json()["cases"]
    assert listed and {c["district_code"] for c in listed} == {"321311"}
    assert suyu["id"] in [c["id"] for c in listed]
    assert client.get(f"/cases/{suyu['id']}", headers=bearer(keys["dispatcher"])).status_code == 200
    assert client.get("/cases").status_code == 401


def test_a_late_case_is_warned_then_escalated_once(client, scene, city_db):
    keys = scene["keys"]
    case = _new_case(client, keys["dispatcher"], *_point(city_db, "321302"), event_class="0402")
    _step(client, keys["dispatcher"], case["id"], "file")
    dispatched = _step(client, keys["dispatcher"], case["id"], "dispatch").json()
    warn_at = datetime.fromisoformat(dispatched["warn_at"])
    deadline = datetime.fromisoformat(dispatched["deadline_at"])

    async def sweep(at):
        async with await psycopg.AsyncConnection.connect(city_db, row_factory=dict_row, autocommit=True) as conn:
            return await sweep_deadlines(conn, at)

    def system_steps():
        events = client.get(f"/cases/{case['id']}", headers=bearer(keys["dispatcher"])).json()["events"]
        return [e["action"] for e in events if e["actor"] == "system"]

    asyncio.run(sweep(warn_at - timedelta(seconds=1)))
    assert system_steps() == []
    asyncio.run(sweep(warn_at + timedelta(seconds=1)))
    assert system_steps() == ["warn"]
    asyncio.run(sweep(deadline + timedelta(seconds=1)))
    asyncio.run(sweep(deadline + timedelta(hours=1)))
    assert system_steps() == ["warn", "escalate"]
    # the clock passes the deadline: the case lists as overdue
    with open_connection(city_db) as conn:
        conn.execute("UPDATE city.case_file SET deadline_at = now() - interval '1 minute' WHERE id = %s", [case["id"]])
        conn.commit()
    overdue = client.get("/cases", params={"overdue": True, "limit": 1000}, headers=bearer(keys["dispatcher"])).json()["cases"]
    assert case["id"] in [c["id"] for c in overdue]


def test_a_dispatchers_day_on_the_command_line(scene, city_db):
    from tests.support.cli import cityops
    lon, lat = _point(city_db, "321302")
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_KEY": scene["keys"]["dispatcher"]}
    opened = cityops("case", "open", "--lon", str(lon), "--lat", str(lat), "--event-class", "0102", "--description", "暴露垃圾", env=env)
    assert opened.returncode == 0, opened.stderr
    case_id = opened.stderr.split("(id ")[1].split(")")[0]
    assert cityops("case", "file", case_id, env=env).returncode == 0
    dispatched = cityops("case", "dispatch", case_id, env=env)
    assert dispatched.returncode == 0 and "dispatched" in dispatched.stderr and scene["unit"] in dispatched.stderr
    field = {**env, "CITYOPS_KEY": scene["keys"]["field"]}
    assert cityops("case", "accept", case_id, env=field).returncode == 0
    assert cityops("case", "handle", case_id, "--note", "已清运", "--photo", "https://example.org/a.jpg", env=field).returncode == 0
    early = cityops("case", "close", case_id, env=env)
    assert early.returncode == 1 and "'handled'" in early.stderr and "'checked'" in early.stderr
    assert cityops("case", "check", case_id, "--passed", env=env).returncode == 0
    closed = cityops("case", "close", case_id, env=env)
    assert closed.returncode == 0 and "closed" in closed.stderr and "已清运" in closed.stderr
    listed = cityops("case", "list", "--state", "closed", env=env)
    assert listed.returncode == 0 and case_id in listed.stderr


def test_open_cases_are_a_features_collection_filtered_by_state_class_and_deadline(client, city_db):
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cql = f"state IN ('dispatched', 'processing') AND event_class_code = '0402' AND deadline_at < TIMESTAMP('{now}')"
    response = client.get("/collections/cases/items", params={"filter": cql, "limit": 10000})
    assert response.status_code == 200, response.text
    with open_connection(city_db) as conn:
        expected = conn.execute("SELECT count(*) AS n FROM city.case_file WHERE state IN ('dispatched', 'processing') "
                                "AND event_class_code = '0402' AND deadline_at < %s", [now]).fetchone()["n"]
    assert response.json()["numberMatched"] == expected > 0


@pytest.mark.parametrize("level, areas_sql", [("district", "SELECT count(*) AS n FROM city.district"),
                                              ("street", "SELECT count(*) AS n FROM city.street")])
def test_evaluation_figures_per_area_agree_with_the_case_log(client, city_db, level, areas_sql):
    figures = client.get("/evaluation", params={"level": level, "days": 30})
    assert figures.status_code == 200, figures.text
    features = figures.json()["features"]
    with open_connection(city_db) as conn:
        assert len(features) == conn.execute(areas_sql).fetchone()["n"]
        cases = conn.execute("SELECT count(*) AS n FROM city.case_file WHERE reported_at >= now() - interval '30 days' "
                             "AND state <> 'voided'").fetchone()["n"]
    assert sum(f["properties"]["cases"] for f in features) == cases
    assert {f["properties"]["class"] for f in features} <= {1, 2, 3, 4, 5}
    busiest = max(features, key=lambda f: f["properties"]["cases_per_km2"] or 0)
    assert busiest["properties"]["class"] == 5 and busiest["geometry"]["type"] == "MultiPolygon"
    assert all(0 <= (f["properties"]["on_time_percent"] or 0) <= 100 for f in features)
    table = client.get("/evaluation", params={"level": level, "f": "csv"})
    assert table.headers["content-type"].startswith("text/csv") and len(table.text.strip().splitlines()) == len(features) + 1
    assert client.get("/evaluation", params={"level": "galaxy"}).status_code == 400


def _rows_touched(node: dict) -> float:
    """Rows a plan node and everything under it produced or filtered away, over all its loops."""
    loops = node.get("Actual Loops", 1)
    own = loops * sum(node.get(key, 0) for key in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Join Filter",
                                                     "Rows Removed by Index Recheck"))
    return own + sum(_rows_touched(child) for child in node.get("Plans", []))


def test_a_year_of_evaluation_probes_the_spatial_index_not_every_pair(city_db):
    # repeat cases (same class within 50 m) were found by comparing every pair of a class, or every
    # earlier case, per case: 50 million rows over 200 days, GET /evaluation?days=366 hung past 20 s
    from ops.evaluation import REPEAT_DISTANCE_M, evaluation_query
    with open_connection(city_db) as conn:
        plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + evaluation_query("street", with_geometry=False),
                            {"days": 366}).fetchone()["QUERY PLAN"][0]["Plan"]
        cases = conn.execute("SELECT count(*) AS n FROM city.case_file").fetchone()["n"]
        repeats = conn.execute(f"""
            SELECT count(*) AS n FROM city.case_file a WHERE a.state <> 'voided' AND a.bgcode IS NOT NULL
              AND a.reported_at >= now() - interval '30 days' AND EXISTS (
                SELECT 1 FROM city.case_file b WHERE b.id <> a.id AND b.state <> 'voided'
                  AND b.reported_at < a.reported_at AND b.reported_at >= now() - interval '30 days'
                  AND coalesce(b.event_class_code, b.component_class_code) = coalesce(a.event_class_code, a.component_class_code)
                  AND ST_Distance(b.geom::geography, a.geom::geography) <= {REPEAT_DISTANCE_M} * 1.01)""").fetchone()["n"]
        rows = conn.execute(evaluation_query("district", with_geometry=False), {"days": 30}).fetchall()
    assert cases > 10_000
    assert _rows_touched(plan) < 50 * cases, f"{_rows_touched(plan):,.0f} rows touched for {cases:,} cases"
    assert repeats > 0 and abs(sum(r["repeat_cases"] for r in rows) - repeats) <= max(1, repeats * 0.02)  # Mercator vs geodesic at 50 m
