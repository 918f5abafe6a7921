"""SensorThings API 1.1 reads: Things (instrumented covers), ObservedProperties, Datastreams with
their latest observation (from city.sensor_latest, never a scan of the readings), Observations."""

from __future__ import annotations

import psycopg


async def things(conn: psycopg.AsyncConnection, base: str, top: int, skip: int) -> dict:
    rows = await (await conn.execute(
        "SELECT s.objcode, s.device_id, s.state, s.interval_s, s.last_report_at, c.objname, c.bgcode, "
        "ST_AsGeoJSON(c.geom, 7)::json AS location FROM city.manhole_sensor s JOIN city.component c USING (objcode) "
        "ORDER BY s.objcode LIMIT %s OFFSET %s", [top, skip])).fetchall()
    return {"value": [{
        "@iot.id": r["objcode"], "@iot.selfLink": f"{base}/Things('{r['objcode']}')", "name": r["device_id"],
        "description": r["objname"],
        "properties": {"state": r["state"], "interval_s": r["interval_s"], "bgcode": r["bgcode"],
                       "last_report_at": r["last_report_at"].isoformat() if r["last_report_at"] else None},
        "Locations": [{"encodingType": "application/geo+json", "location": r["location"]}],
        "Datastreams@iot.navigationLink": f"{base}/Datastreams?thing={r['objcode']}"} for r in rows]}


async def observed_properties(conn: psycopg.AsyncConnection, base: str) -> dict:
    rows = await (await conn.execute("SELECT * FROM city.observed_property ORDER BY code")).fetchall()
    return {"value": [{"@iot.id": r["code"], "@iot.selfLink": f"{base}/ObservedProperties('{r['code']}')",
                       "name": r["name"], "definition": r["definition"], "description": r["name"]} for r in rows]}


async def datastreams(conn: psycopg.AsyncConnection, base: str, top: int, skip: int, thing: str | None,
                      stream_id: int | None = None) -> dict:
    rows = await (await conn.execute(
        "SELECT d.id, d.objcode, d.observed_property, p.name, p.unit_name, p.unit_symbol, p.definition, "
        "l.phenomenon_time, l.result FROM city.datastream d JOIN city.observed_property p ON p.code = d.observed_property "
        "LEFT JOIN city.sensor_latest l ON l.datastream_id = d.id "
        "WHERE (%(thing)s::text IS NULL OR d.objcode = %(thing)s) AND (%(id)s::bigint IS NULL OR d.id = %(id)s) "
        "ORDER BY d.id LIMIT %(top)s OFFSET %(skip)s", {"thing": thing, "id": stream_id, "top": top, "skip": skip})).fetchall()
    return {"value": [{
        "@iot.id": r["id"], "@iot.selfLink": f"{base}/Datastreams({r['id']})", "name": f"{r['objcode']} {r['observed_property']}",
        "description": r["name"], "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
        "unitOfMeasurement": {"name": r["unit_name"], "symbol": r["unit_symbol"], "definition": r["definition"]},
        "Thing": {"@iot.id": r["objcode"]}, "ObservedProperty": {"@iot.id": r["observed_property"]},
        "latest": None if r["phenomenon_time"] is None else {"phenomenonTime": r["phenomenon_time"].isoformat(), "result": r["result"]},
        "Observations@iot.navigationLink": f"{base}/Datastreams({r['id']})/Observations"} for r in rows]}


async def observations(conn: psycopg.AsyncConnection, base: str, stream_id: int, top: int) -> dict:
    rows = await (await conn.execute(
        "SELECT phenomenon_time, result FROM city.sensor_reading WHERE datastream_id = %s "
        "ORDER BY phenomenon_time DESC LIMIT %s", [stream_id, top])).fetchall()
    return {"value": [{"phenomenonTime": r["phenomenon_time"].isoformat(), "result": r["result"]} for r in rows]}
