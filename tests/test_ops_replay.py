"""A replayed day of sensor readings through the real API: steady, noisy, spiking, flapping, rising
and silent covers raise exactly the alarms and cases the script says — no duplicates, no misses."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row

from gis.db import open_connection
from gis.keys import create_key
from ops.alarms import mark_offline
from tests.conftest import bearer

MINUTES = 151
ROLES = ("steady", "holds", "flaps", "spikes", "rises", "falls_silent", "methane_blip")


def script(role: str, minute: int, rng: np.random.Generator) -> dict[str, float] | None:
    """The readings of a cover of `role` at `minute` (None: it sends nothing)."""
    tilt, water, methane = abs(rng.normal(2, 1.2)), max(0.0, rng.normal(8, 3)), max(0.0, rng.normal(40, 15))
    if role == "holds" and 30 <= minute < 60:
        tilt = 20 + rng.normal(0, 2)
    if role == "flaps" and 20 <= minute < 60:
        tilt = 20.0 if minute % 2 == 0 else 1.0
    if role == "spikes" and minute % 15 == 7:
        tilt = 30.0
    if role == "rises" and minute >= 50:
        water = 40 + minute / 10
    if role == "falls_silent" and minute >= 100:
        return None
    if role == "methane_blip" and minute == 70:
        methane = 9000.0
    return {"tilt_deg": tilt, "water_level_cm": water, "methane_ppm": methane, "battery_pct": 90.0}


EXPECTED_ALARMS = {("holds", "displacement", "cleared", False), ("flaps", "displacement", "cleared", True),
                   ("rises", "overflow", "open", False)}


@pytest.fixture(scope="module")
def covers(city_db: str) -> dict[str, dict]:
    with open_connection(city_db) as conn:
        rows = conn.execute("""
            SELECT s.objcode, json_object_agg(d.observed_property, d.id) AS streams
            FROM city.manhole_sensor s JOIN city.datastream d USING (objcode)
            WHERE s.state = 'normal' AND left(s.objcode, 6) = '321311'
              AND NOT EXISTS (SELECT 1 FROM city.alarm a WHERE a.objcode = s.objcode AND a.status <> 'cleared')
            GROUP BY s.objcode ORDER BY s.objcode OFFSET 100 LIMIT %s""", [len(ROLES)]).fetchall()
    return {role: row for role, row in zip(ROLES, rows)}


def test_a_replayed_day_raises_exactly_the_scripted_alarms_and_cases(client, city_db, covers):
    with open_connection(city_db) as conn:
        device, _ = create_key(conn, "device", ["321311"], "replay sensors")
        conn.commit()
    rng = np.random.default_rng(20261129)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=MINUTES)
    for minute in range(MINUTES):
        at = (start + timedelta(minutes=minute)).isoformat()
        batch = []
        for role, cover in covers.items():
            values = script(role, minute, rng)
            if values is None:
                continue
            for prop, value in values.items():
                batch.append({"Datastream": {"@iot.id": cover["streams"][prop]}, "components": ["phenomenonTime", "result"],
                              "dataArray": [[at, round(value, 2)]]})
        response = client.post("/sta/v1.1/CreateObservations", json=batch, headers=bearer(device))
        assert response.status_code == 201 and not any(r.startswith("error") for r in response.json()), response.text

    async def sweep():
        async with await psycopg.AsyncConnection.connect(city_db, row_factory=dict_row, autocommit=True) as conn:
            return await mark_offline(conn)
    asyncio.run(sweep())

    role_of = {cover["objcode"]: role for role, cover in covers.items()}
    with open_connection(city_db) as conn:
        alarms = conn.execute("SELECT id, objcode, alarm_type, status, flapping FROM city.alarm WHERE objcode = ANY(%s) AND raised_at >= %s",
                              [list(role_of), start]).fetchall()
        cases = conn.execute("SELECT alarm_id, source, state, event_class_code FROM city.case_file WHERE alarm_id = ANY(%s)",
                             [[a["id"] for a in alarms]]).fetchall()
        states = {role_of[r["objcode"]]: r["state"] for r in conn.execute(
            "SELECT objcode, state FROM city.manhole_sensor WHERE objcode = ANY(%s)", [list(role_of)]).fetchall()}
        stored = conn.execute("SELECT count(*) AS n FROM city.sensor_reading r JOIN city.datastream d ON d.id = r.datastream_id "
                              "WHERE d.objcode = ANY(%s) AND r.phenomenon_time >= %s", [list(role_of), start]).fetchone()["n"]
    assert {(role_of[a["objcode"]], a["alarm_type"], "cleared" if a["status"] == "cleared" else "open", a["flapping"]) for a in alarms} == EXPECTED_ALARMS
    assert len(alarms) == len(EXPECTED_ALARMS)
    assert sorted(c["alarm_id"] for c in cases) == sorted(a["id"] for a in alarms)
    assert all(c["source"] == "sensor" and c["state"] == "reported" for c in cases)
    assert {c["event_class_code"] for c in cases} == {"0402", "0401"}
    assert states["falls_silent"] == "offline" and states["rises"] == "alarm"
    assert {role for role, state in states.items() if state == "normal"} == {"steady", "holds", "flaps", "spikes", "methane_blip"}
    assert stored == 4 * (len(ROLES) * MINUTES - (MINUTES - 100))


def test_retention_drops_whole_old_months_and_keeps_the_rest(city_db, covers):
    from datetime import date

    from ops.partitions import READINGS
    from tests.support.cli import cityops

    async def make_old_month():
        async with await psycopg.AsyncConnection.connect(city_db, row_factory=dict_row, autocommit=True) as conn:
            async with conn.transaction():
                await READINGS.ensure(conn, {date(2024, 3, 1)})
                await conn.execute("INSERT INTO city.sensor_reading (datastream_id, phenomenon_time, result) VALUES (1, '2024-03-15T00:00:00Z', 1)")
    asyncio.run(make_old_month())

    def partitions():
        with open_connection(city_db) as conn:
            return {r["relname"] for r in conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                                       "WHERE i.inhparent = 'city.sensor_reading'::regclass").fetchall()}
    before = partitions()
    assert "sensor_reading_202403" in before and len(before) >= 2
    result = cityops("sensors", "retention", "--keep-days", "90", env={"CITYOPS_DATABASE_URL": city_db})
    assert result.returncode == 0 and "sensor_reading_202403" in result.stderr
    assert partitions() == before - {"sensor_reading_202403"}
