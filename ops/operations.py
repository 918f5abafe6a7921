"""Live operations writes: stall occupancy and sensor alarms. District checks run in the same
transaction as the write, so a scoped key can never touch another district's rows."""

from __future__ import annotations

import psycopg

from gis.errors import Conflict, InvalidInput, NotFound
from gis.keys import Principal
from ops.alarms import insert_open_alarm

ALARM_TYPES = ("displacement", "opened", "overflow", "methane", "low_battery")


async def set_stall_occupancy(conn: psycopg.AsyncConnection, principal: Principal, code: str, occupied: int) -> dict:
    async with conn.transaction():
        row = await (await conn.execute(
            "SELECT id, district_code, capacity FROM city.stall_site WHERE code = %s FOR UPDATE", [code])).fetchone()
        if row is None:
            raise NotFound(f"no stall site with code {code!r}")
        principal.require_district(row["district_code"])
        if not 0 <= occupied <= row["capacity"]:
            raise InvalidInput(f"occupied must be between 0 and the site's capacity {row['capacity']}, got {occupied}")
        return await (await conn.execute(
            "UPDATE city.stall_site SET occupied = %s, updated_at = now() WHERE id = %s "
            "RETURNING code, name, capacity, occupied, district_code, updated_at", [occupied, row["id"]])).fetchone()


async def raise_alarm(conn: psycopg.AsyncConnection, principal: Principal, objcode: str, alarm_type: str,
                      severity: int, reading: float | None) -> dict:
    if alarm_type not in ALARM_TYPES:
        raise InvalidInput(f"unknown alarm type {alarm_type!r}; types are {', '.join(ALARM_TYPES)}")
    async with conn.transaction():
        cover = await (await conn.execute(
            "SELECT district_code FROM city.manhole_cover_v WHERE objcode = %s", [objcode])).fetchone()
        if cover is None:
            raise NotFound(f"no manhole cover with component code {objcode!r}")
        principal.require_district(cover["district_code"])
        alarm = await insert_open_alarm(
            conn, "INSERT INTO city.alarm (objcode, alarm_type, severity, reading) VALUES (%(objcode)s, %(alarm_type)s, "
                  "%(severity)s, %(reading)s) RETURNING id, objcode, alarm_type, severity, status, raised_at",
            {"objcode": objcode, "alarm_type": alarm_type, "severity": severity, "reading": reading})
        if alarm is None:
            raise Conflict(f"cover {objcode} already has an open {alarm_type} alarm (one open alarm per cover and type)")
        await conn.execute("UPDATE city.manhole_sensor SET state = 'alarm', last_report_at = now() WHERE objcode = %s", [objcode])
        return alarm
