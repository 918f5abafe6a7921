"""Alarm rules over sensor readings (rules are rows of city.alarm_rule, not code).

Per cover and rule: raise when the property is beyond the threshold for `hold_readings` readings
and `hold_seconds` (Prometheus `for:`); clear when it is back past `clear_threshold` (hysteresis)
for `clear_readings` readings; `flap_changes` condition changes within `flap_window_s` mark the
cover flapping (Nagios): a flapping cover raises one alarm, held open until it has been steady for a
window. At most one open alarm per cover and type: `city.alarm` is partitioned by month, so the
key that holds this is `city.alarm_open`'s (one row per open alarm, kept by a trigger); a second
writer waits for the first and is refused, so concurrent batches cannot double an alarm. An alarm
whose rule names an event class opens a case (source 'sensor') routed by grid, in the same
transaction. A sensor silent for twice its reporting interval is 'offline'.

`city.alarm` (with `city.alarm_open`), `city.alarm_state` and the state column of
`city.manhole_sensor` are written here."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from ops import partitions
from ops.calendar import WorkingCalendar, read_calendar
from ops.cases import open_case

ALARM_NAMES = {"displacement": "井盖位移", "opened": "井盖开启", "overflow": "井内水位超限", "methane": "甲烷浓度超限",
               "low_battery": "电量低"}


@dataclass
class RuleState:
    breaching: bool = False
    streak: int = 0
    streak_since: datetime | None = None
    last_time: datetime | None = None
    changes: list[datetime] = field(default_factory=list)
    flapping: bool = False
    open_alarm: int | None = None


async def read_rules(conn: psycopg.AsyncConnection) -> dict[str, list[dict]]:
    """Rules by observed property."""
    rules: dict[str, list[dict]] = {}
    for row in await (await conn.execute("SELECT * FROM city.alarm_rule ORDER BY alarm_type")).fetchall():
        rules.setdefault(row["observed_property"], []).append(row)
    return rules


class TimedCache:
    """What `load` read last, read again after `ttl_s`: a batch need not ask each time for data that
    changes rarely (rules, the working calendar); an edit applies within `ttl_s`."""

    def __init__(self, load: Callable[[psycopg.AsyncConnection], Awaitable[Any]], ttl_s: float):
        self.load = load
        self.ttl_s = ttl_s
        self.value: Any = None
        self.read_at = 0.0

    async def get(self, conn: psycopg.AsyncConnection) -> Any:
        if self.value is None or time.monotonic() - self.read_at > self.ttl_s:
            self.value, self.read_at = await self.load(conn), time.monotonic()
        return self.value


def step(rule: dict, state: RuleState, at: datetime, value: float) -> str | None:
    """Advance one cover's state under one rule by a reading; 'raise', 'clear' or None."""
    if state.last_time is not None and at <= state.last_time:
        return None  # late or repeated readings are stored but do not move the state back in time
    above = rule["above"]
    breach = value > rule["threshold"] if above else value < rule["threshold"]
    cleared = value <= rule["clear_threshold"] if above else value >= rule["clear_threshold"]
    condition = True if breach else False if cleared else state.breaching
    if state.last_time is None or condition != state.breaching:
        if state.last_time is not None:
            state.changes.append(at)
        state.breaching, state.streak, state.streak_since = condition, 1, at
    else:
        # only compared with the hold and clear counts: capped, a steady cover's state stops changing
        state.streak = min(state.streak + 1, max(rule["hold_readings"], rule["clear_readings"]))
    state.last_time = at
    window_start = at - timedelta(seconds=rule["flap_window_s"])
    state.changes = [t for t in state.changes if t > window_start]
    if len(state.changes) >= rule["flap_changes"]:
        state.flapping = True
    elif state.flapping and len(state.changes) < max(2, rule["flap_changes"] // 3):
        state.flapping = False
    if state.open_alarm is None:
        held = (state.breaching and state.streak >= rule["hold_readings"]
                and (at - state.streak_since).total_seconds() >= rule["hold_seconds"])
        return "raise" if held or state.flapping else None
    if not state.breaching and not state.flapping and state.streak >= rule["clear_readings"]:
        return "clear"
    return None


# The covers' rule states, locked in key order so that concurrent batches for the same covers queue, not deadlock.
def _essence(state: RuleState) -> tuple:
    """What a stored state must keep (last_time only orders readings; a steady cover need not move it)."""
    return (state.breaching, state.streak, state.streak_since, tuple(state.changes), state.flapping)


def _is_idle(state: RuleState) -> bool:
    return not state.breaching and not state.flapping and not state.changes and state.open_alarm is None


STATE_SQL = """
WITH locked AS (
    SELECT * FROM city.alarm_state WHERE objcode = ANY(%(covers)s) ORDER BY objcode, alarm_type FOR UPDATE
)
SELECT k.objcode, k.alarm_type, s.breaching, s.streak, s.streak_since, s.last_time, s.changes, s.flapping,
       (SELECT o.alarm_id FROM city.alarm_open o WHERE o.objcode = k.objcode AND o.alarm_type = k.alarm_type) AS open_alarm
FROM unnest(%(objcodes)s::text[], %(types)s::text[]) AS k(objcode, alarm_type)
LEFT JOIN locked s ON s.objcode = k.objcode AND s.alarm_type = k.alarm_type
ORDER BY k.objcode, k.alarm_type
"""

SAVE_STATE_SQL = """
INSERT INTO city.alarm_state (objcode, alarm_type, breaching, streak, streak_since, last_time, changes, flapping)
SELECT objcode, alarm_type, breaching, streak, since, last, changes::timestamptz[], flapping
FROM unnest(%(objcodes)s::text[], %(types)s::text[], %(breaching)s::bool[], %(streak)s::int[],
                     %(since)s::timestamptz[], %(last)s::timestamptz[], %(changes)s::text[], %(flapping)s::bool[])
    AS s(objcode, alarm_type, breaching, streak, since, last, changes, flapping)
ON CONFLICT (objcode, alarm_type) DO UPDATE SET breaching = excluded.breaching, streak = excluded.streak,
    streak_since = excluded.streak_since, last_time = excluded.last_time, changes = excluded.changes,
    flapping = excluded.flapping
"""

RAISE_SQL = """
INSERT INTO city.alarm (objcode, alarm_type, severity, reading, raised_at, flapping)
VALUES (%(objcode)s, %(alarm_type)s, %(severity)s, %(reading)s, %(at)s, %(flapping)s)
RETURNING id, ST_X(geom) AS lon, ST_Y(geom) AS lat
"""


async def insert_open_alarm(conn: psycopg.AsyncConnection, statement: str, params: dict[str, Any],
                            raised_at: datetime | None = None) -> dict | None:
    """Run an INSERT of one open alarm into city.alarm (its month's partition made if need be);
    None when the cover already has an open alarm of that type. A savepoint keeps the caller's
    transaction going after a refusal."""
    await partitions.ALARMS.ensure(conn, {partitions.month_of(raised_at or datetime.now(timezone.utc))})
    try:
        async with conn.transaction():
            return await (await conn.execute(statement, params)).fetchone()
    except psycopg.errors.UniqueViolation as error:
        if error.diag.constraint_name != "alarm_one_open":
            raise
        return None


def _changes_literal(changes: list[datetime]) -> str:
    return "{" + ",".join(f'"{t.isoformat()}"' for t in changes) + "}"


async def evaluate(conn: psycopg.AsyncConnection, readings: list[tuple[str, str, datetime, float]],
                   rules: dict[str, list[dict]] | None = None, calendar: WorkingCalendar | None = None) -> dict:
    """Run the rules over readings (objcode, observed property, time, value) in the caller's
    transaction; returns {raised: [alarm ids], cleared: [...], cases: [case ids]}."""
    rules = rules if rules is not None else await read_rules(conn)
    relevant = [(o, p, t, v) for o, p, t, v in readings if p in rules]
    if not relevant:
        return {"raised": [], "cleared": [], "cases": []}
    keys = sorted({(o, rule["alarm_type"]) for o, p, _t, _v in relevant for rule in rules[p]})
    rows = await (await conn.execute(STATE_SQL, {"objcodes": [k[0] for k in keys], "types": [k[1] for k in keys],
                                                 "covers": sorted({k[0] for k in keys})})).fetchall()
    states = {(r["objcode"], r["alarm_type"]): RuleState(
        breaching=bool(r["breaching"]), streak=r["streak"] or 0, streak_since=r["streak_since"], last_time=r["last_time"],
        changes=list(r["changes"] or []), flapping=bool(r["flapping"]), open_alarm=r["open_alarm"]) for r in rows}
    stored = {key: _essence(state) for key, state in states.items() if state.last_time is not None}
    raised, cleared, cases = [], [], []
    for objcode, prop, at, value in sorted(relevant, key=lambda r: r[2]):
        for rule in rules[prop]:
            state = states[(objcode, rule["alarm_type"])]
            outcome = step(rule, state, at, value)
            if outcome == "raise":
                alarm = await insert_open_alarm(conn, RAISE_SQL, {
                    "objcode": objcode, "alarm_type": rule["alarm_type"], "severity": rule["severity"],
                    "reading": value, "at": at, "flapping": state.flapping}, at)
                if alarm is None:
                    continue
                state.open_alarm = alarm["id"]
                raised.append(alarm["id"])
                if rule["event_class_code"]:
                    calendar = calendar or await read_calendar(conn)
                    case = await open_case(conn, source="sensor", lon=alarm["lon"], lat=alarm["lat"],
                                           event_class_code=rule["event_class_code"], objcode=objcode,
                                           description=f"{ALARM_NAMES.get(rule['alarm_type'], rule['alarm_type'])}: "
                                                       f"{prop} = {value:g}" + ("（频繁抖动 flapping）" if state.flapping else ""),
                                           actor="alarm rule " + rule["alarm_type"], alarm_id=alarm["id"], calendar=calendar)
                    cases.append(case["id"])
            elif outcome == "clear":
                await conn.execute("UPDATE city.alarm SET status = 'cleared', cleared_at = greatest(%s, raised_at) WHERE id = %s",
                                   [at, state.open_alarm])
                cleared.append(state.open_alarm)
                state.open_alarm = None
    # A steady cover (not breaching, not flapping, nothing open) whose stored state says the same is
    # not written again: in normal operation nearly every reading is such.
    keys = [k for k in keys if (_essence(states[k]) != stored[k] if k in stored else not _is_idle(states[k]))]
    if not keys:
        return {"raised": raised, "cleared": cleared, "cases": cases}
    await conn.execute(SAVE_STATE_SQL, {
        "objcodes": [k[0] for k in keys], "types": [k[1] for k in keys],
        "breaching": [states[k].breaching for k in keys], "streak": [states[k].streak for k in keys],
        "since": [states[k].streak_since for k in keys], "last": [states[k].last_time for k in keys],
        "changes": [_changes_literal(states[k].changes) for k in keys], "flapping": [states[k].flapping for k in keys]})
    return {"raised": raised, "cleared": cleared, "cases": cases}


MARK_OFFLINE_SQL = """
UPDATE city.manhole_sensor s SET state = 'offline', last_report_at = r.last
FROM (SELECT d.objcode, max(l.phenomenon_time) AS last
      FROM city.datastream d JOIN city.sensor_latest l ON l.datastream_id = d.id GROUP BY d.objcode) r
WHERE r.objcode = s.objcode AND s.state <> 'offline' AND r.last < %(now)s - make_interval(secs => 2 * s.interval_s)
RETURNING s.objcode
"""


async def mark_offline(conn: psycopg.AsyncConnection, now: datetime | None = None) -> int:
    """Sensors silent for twice their reporting interval become 'offline' (a reading brings them back)."""
    async with conn.transaction():
        now = now or (await (await conn.execute("SELECT now() AS now")).fetchone())["now"]
        return len(await (await conn.execute(MARK_OFFLINE_SQL, {"now": now})).fetchall())
