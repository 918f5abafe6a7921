"""Sensor readings in, shaped on OGC SensorThings API 1.1: a manhole cover's sensor is a Thing, each
property it measures a Datastream (city.datastream), each reading an Observation. Batches come as
`CreateObservations` (Datastream + components + dataArray); every row is answered on its own: the
good rows land, a bad row (unknown datastream, a time in the future or too old, a non-numeric or
out-of-range result) is answered "error: <reason>" and nothing of it is written.

Readings go to city.sensor_reading, partitioned by month of phenomenon time (a partition is made on
first use, ops.partitions; retention drops whole months), once per datastream and time (a batch sent
again is stored once and answered the same), the latest value per datastream to city.sensor_latest
and the cover's state in city.manhole_sensor when it changes; then the alarm rules run (ops.alarms), all in one
transaction per batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from gis.errors import InvalidInput
from gis.keys import Principal
from ops import alarms, partitions
from ops.calendar import read_calendar
from gis.settings import settings_of
from ops.settings import OpsSettings

# Where a property's values must lie (the cover table's CHECKs say the same).
VALID_RANGE = {"tilt_deg": (0.0, 180.0), "lid_open": (0.0, 1.0), "methane_ppm": (0.0, 1e6),
               "battery_pct": (0.0, 100.0), "water_level_cm": (-1e4, 1e4), "signal_dbm": (-200.0, 50.0)}


@dataclass
class Row:
    index: int
    datastream_id: int | None
    time: datetime | None
    result: float | None
    error: str | None = None


def _parse_time(value) -> datetime:
    if not isinstance(value, str):
        raise ValueError("phenomenonTime must be an ISO 8601 string")
    start = value.split("/")[0]  # an interval counts from its start
    parsed = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"phenomenonTime {value!r} has no time zone")
    return parsed


def _parse_result(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"result {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"result {value!r} is not a finite number")
    return float(value)


def parse_batches(body) -> list[Row]:
    """Flatten CreateObservations' body into rows; a malformed row becomes an error row."""
    if not isinstance(body, list):
        raise InvalidInput("CreateObservations expects a JSON array of {Datastream, components, dataArray}")
    rows: list[Row] = []
    for group in body:
        if not isinstance(group, dict):
            raise InvalidInput("each CreateObservations entry is an object with Datastream, components and dataArray")
        components = group.get("components")
        data = group.get("dataArray")
        stream = group.get("Datastream")
        if not isinstance(components, list) or "result" not in components or "phenomenonTime" not in components:
            raise InvalidInput("components must list at least phenomenonTime and result")
        if not isinstance(data, list):
            raise InvalidInput("dataArray must be an array of rows")
        stream_id = stream.get("@iot.id") if isinstance(stream, dict) else None
        t_at, r_at = components.index("phenomenonTime"), components.index("result")
        for values in data:
            row = Row(len(rows), None, None, None)
            rows.append(row)
            try:
                if isinstance(stream_id, bool) or not isinstance(stream_id, (int, str)) or not str(stream_id).isdigit():
                    raise ValueError(f"Datastream @iot.id {stream_id!r} is not a datastream id")
                row.datastream_id = int(stream_id)
                if not isinstance(values, list) or len(values) != len(components):
                    raise ValueError(f"a dataArray row needs {len(components)} values ({', '.join(components)})")
                row.time, row.result = _parse_time(values[t_at]), _parse_result(values[r_at])
            except ValueError as exc:
                row.error = str(exc)
    return rows


def observation_rows(body: dict) -> list[Row]:
    """One Observation (POST /Datastreams(id)/Observations or /Observations with Datastream)."""
    if not isinstance(body, dict):
        raise InvalidInput("an Observation is a JSON object with phenomenonTime, result and Datastream")
    return parse_batches([{"Datastream": body.get("Datastream"), "components": ["phenomenonTime", "result"],
                           "dataArray": [[body.get("phenomenonTime"), body.get("result")]]}])


RULES = alarms.TimedCache(alarms.read_rules, settings_of(OpsSettings).rule_cache_s)
CALENDAR = alarms.TimedCache(read_calendar, settings_of(OpsSettings).rule_cache_s)

STREAMS_SQL = """
SELECT d.id, d.objcode, d.observed_property, left(d.objcode, 6) AS district_code
FROM city.datastream d WHERE d.id = ANY(%s)
"""

# A reading sent again (a gateway retrying a batch whose answer it lost) is stored once: the first kept.
STORE_SQL = """
INSERT INTO city.sensor_reading (datastream_id, phenomenon_time, result)
SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::float8[])
ON CONFLICT ON CONSTRAINT sensor_reading_once DO NOTHING
"""

LATEST_SQL = """
INSERT INTO city.sensor_latest AS l (datastream_id, phenomenon_time, result)
SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::float8[])
ON CONFLICT (datastream_id) DO UPDATE SET phenomenon_time = excluded.phenomenon_time, result = excluded.result
WHERE excluded.phenomenon_time >= l.phenomenon_time
"""

# A cover's row changes only when its state does (offline → normal, normal ⇄ alarm): its writes
# notify the change feed and recount grids, too costly per reading; values live in sensor_latest.
COVER_STATE_SQL = """
SELECT s.objcode, n.state, v.at
FROM unnest(%s::text[], %s::timestamptz[]) AS v(objcode, at)
JOIN city.manhole_sensor s ON s.objcode = v.objcode
CROSS JOIN LATERAL (SELECT CASE WHEN EXISTS (SELECT 1 FROM city.alarm_open o WHERE o.objcode = v.objcode)
                                THEN 'alarm' ELSE 'normal' END AS state) n
WHERE s.state <> n.state
"""


async def ingest(conn: psycopg.AsyncConnection, principal: Principal, rows: list[Row], settings: OpsSettings,
                 self_link: str = "") -> dict:
    """Store the good rows, run the alarm rules; returns {results: ["<link>" | "error: …" per row],
    stored, rejected, raised, cleared, cases}."""
    if len(rows) > settings.reading_batch_limit:
        raise InvalidInput(f"a batch holds at most {settings.reading_batch_limit} readings, this one {len(rows)}")
    async with conn.transaction():
        now = datetime.now(timezone.utc)
        streams = {r["id"]: r for r in await (await conn.execute(
            STREAMS_SQL, [sorted({r.datastream_id for r in rows if r.datastream_id is not None})])).fetchall()}
        newest, oldest = now + timedelta(seconds=settings.reading_max_future_s), now - timedelta(days=settings.reading_max_age_days)
        for row in rows:
            if row.error:
                continue
            stream = streams.get(row.datastream_id)
            if stream is None or (principal.districts and stream["district_code"] not in principal.districts):
                row.error = f"unknown datastream {row.datastream_id}"
            elif row.time > newest:
                row.error = f"phenomenonTime {row.time.isoformat()} lies in the future (server time {now.isoformat()})"
            elif row.time < oldest:
                row.error = f"phenomenonTime {row.time.isoformat()} is older than {settings.reading_max_age_days} days"
            else:
                low, high = VALID_RANGE.get(stream["observed_property"], (-math.inf, math.inf))
                if not low <= row.result <= high:
                    row.error = f"result {row.result:g} of {stream['observed_property']} lies outside {low:g}..{high:g}"
        good = [r for r in rows if r.error is None]
        outcome = {"raised": [], "cleared": [], "cases": []}
        if good:
            await partitions.READINGS.ensure(conn, {partitions.month_of(r.time) for r in good})
            await conn.execute(STORE_SQL, [[r.datastream_id for r in good], [r.time for r in good], [r.result for r in good]])
            latest: dict[int, Row] = {}
            for r in good:
                if r.datastream_id not in latest or r.time >= latest[r.datastream_id].time:
                    latest[r.datastream_id] = r
            ids = sorted(latest)
            await conn.execute(LATEST_SQL, [ids, [latest[i].time for i in ids], [latest[i].result for i in ids]])
            observed = [(streams[r.datastream_id]["objcode"], streams[r.datastream_id]["observed_property"], r.time, r.result)
                        for r in good]
            outcome = await alarms.evaluate(conn, observed, await RULES.get(conn), await CALENDAR.get(conn))
            last_of: dict[str, datetime] = {}
            for r in good:
                objcode = streams[r.datastream_id]["objcode"]
                last_of[objcode] = max(last_of.get(objcode, r.time), r.time)
            codes = sorted(last_of)
            changed = await (await conn.execute(COVER_STATE_SQL, [codes, [last_of[c] for c in codes]])).fetchall()
            if changed:
                await conn.execute(
                    "UPDATE city.manhole_sensor s SET state = v.state, last_report_at = greatest(s.last_report_at, v.at) "
                    "FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS v(objcode, state, at) WHERE s.objcode = v.objcode",
                    [[c["objcode"] for c in changed], [c["state"] for c in changed], [c["at"] for c in changed]])
    results = [f"error: {r.error}" if r.error else
               f"{self_link}/Observations('{r.datastream_id}@{r.time.astimezone(timezone.utc).isoformat()}')" for r in rows]
    return {"results": results, "stored": len(good), "rejected": len(rows) - len(good), **outcome}
