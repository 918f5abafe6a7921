"""Cases (案卷): how a case comes into being and moves through 信息采集 → 立案 → 派遣 → 处理 → 反馈
→ 核查结案 → 评价, whatever reported it (an inspector, a sensor alarm, a citizen's Open311 report,
another system).

A case is routed by where it lies: its unit grid from the location, the district from the grid, the
responsible unit from the responsible grid (责任网格) covering the point, else the unit grid's own
unit (责任主体唯一); a case no grid routes waits in the manual dispatch queue. Its time limit is its
class's, in working hours of the working calendar (ops.calendar), counted from dispatch (派遣 starts
the clock); a warning at 80 %, 督办 escalation at 100 %.

Who may do what is checked on the case itself in the same transaction as the write: a
district-scoped key sees only its districts' cases and a field-unit key only its unit's (anything
else is "no such case", a 404 that does not confirm the case exists); a step out of order is a 409
naming the state the case is in. Every step is a `case_event` row with who, when and why.

`city.case_file` and `city.case_event` are written only through this module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from psycopg.types.json import Jsonb

from gis.crs import STORAGE_SRID
from gis.errors import Conflict, InvalidInput, NotFound
from gis.keys import Principal
from ops import partitions
from ops.calendar import WorkingCalendar, read_calendar

CaseSource = Literal["supervisor", "video", "public", "superior", "sensor"]
SOURCES: tuple[str, ...] = ("supervisor", "video", "public", "superior", "sensor")
# The time limit of a component case, and of a class without one.
DEFAULT_LIMIT_HOURS = 24
WARN_SHARE = 0.8
# States in which a case's clock runs (and so it can be late).
CLOCK_STATES = ("dispatched", "processing")
OPEN_STATES = ("reported", "filed", "dispatched", "processing", "handled", "checked", "deferred")


@dataclass(frozen=True)
class Step:
    role: str
    from_states: tuple[str, ...]
    to_state: str | None  # None: the state does not change (extend) or depends on the outcome (check)
    exceptional: bool = False  # 回退/作废/延期/缓办: needs a reason, approved by a supervisor key
    title: str = ""


STEPS: dict[str, Step] = {
    "file": Step("dispatcher", ("reported",), "filed", title="立案"),
    "dispatch": Step("dispatcher", ("filed",), "dispatched", title="派遣"),
    "accept": Step("field_unit", ("dispatched",), "processing", title="处理"),
    "handle": Step("field_unit", ("processing",), "handled", title="反馈"),
    "check": Step("dispatcher", ("handled",), None, title="核查"),
    "close": Step("dispatcher", ("checked",), "closed", title="结案"),
    "evaluate": Step("supervisor", ("closed",), "evaluated", title="评价"),
    "return": Step("supervisor", ("dispatched", "processing"), "filed", exceptional=True, title="回退"),
    "void": Step("supervisor", ("reported", "filed"), "voided", exceptional=True, title="作废"),
    "extend": Step("supervisor", ("dispatched", "processing", "deferred"), None, exceptional=True, title="延期"),
    "defer": Step("supervisor", ("dispatched", "processing"), "deferred", exceptional=True, title="缓办"),
    "resume": Step("dispatcher", ("deferred",), "dispatched", title="恢复"),
}
ACTIONS = tuple(STEPS)

# Where a point lies: its unit grid (and so community, street, district) and the responsible unit.
ROUTE_SQL = f"""
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), {STORAGE_SRID}) AS geom)
SELECT g.bgcode, g.district_code,
       coalesce((SELECT r.responsible_unit_id FROM city.responsible_grid r, p
                 WHERE ST_Intersects(r.geom, p.geom) ORDER BY r.code LIMIT 1),
                g.responsible_unit_id) AS responsible_unit_id
FROM p LEFT JOIN city.unit_grid g ON ST_Intersects(g.geom, p.geom)
ORDER BY g.bgcode LIMIT 1
"""

OPEN_SQL = f"""
WITH n AS (SELECT nextval(pg_get_serial_sequence('city.case_file', 'id')) AS id)
INSERT INTO city.case_file AS f (id, case_no, kind, component_class_code, event_class_code, objcode, district_code,
                                 bgcode, address, description, source, state, reported_at, deadline_at,
                                 responsible_unit_id, alarm_id, geom)
SELECT n.id, to_char(%(now)s AT TIME ZONE 'Asia/Shanghai', 'YYYY') || lpad(n.id::text, 10, '0'),
       %(kind)s, %(component_class_code)s, %(event_class_code)s, %(objcode)s, %(district_code)s, %(bgcode)s,
       %(address)s, %(description)s, %(source)s, 'reported', %(now)s, %(deadline_at)s,
       %(responsible_unit_id)s, %(alarm_id)s, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), {STORAGE_SRID})
FROM n
RETURNING f.id, f.case_no, f.kind, f.state, f.district_code, f.bgcode, f.source, f.reported_at, f.deadline_at
"""

EVENT_SQL = """
INSERT INTO city.case_event (case_id, state, action, actor, note, reason, approver, details, at)
VALUES (%(case_id)s, %(state)s, %(action)s, %(actor)s, %(note)s, %(reason)s, %(approver)s, %(details)s, %(at)s)
"""


async def _record_event(conn: psycopg.AsyncConnection, event: dict) -> None:
    """One case_event (its month's partition made first if this process has not seen it made)."""
    await partitions.CASE_EVENTS.ensure(conn, {partitions.month_of(event["at"])})
    await conn.execute(EVENT_SQL, event)

CASE_COLUMNS = """
c.id, c.case_no, c.kind, c.event_class_code, c.component_class_code, ec.name AS class_name, c.objcode,
c.district_code, c.bgcode, c.address, c.description, c.source, c.state, c.reported_at, c.filed_at,
c.dispatched_at, c.deadline_at, c.warn_at, c.warned_at, c.escalated_at, c.handled_at, c.checked_at, c.closed_at,
c.evaluated_at, c.evaluation, c.alarm_id, c.responsible_unit_id, u.code AS responsible_unit_code,
u.name AS responsible_unit_name, u.department AS responsible_department,
coalesce(ec.time_limit_hours, %(default_hours)s) AS time_limit_hours,
(c.state IN ('dispatched', 'processing') AND c.deadline_at <= %(now)s)
    OR (c.handled_at IS NOT NULL AND c.deadline_at IS NOT NULL AND c.handled_at > c.deadline_at) AS overdue,
(c.state IN ('dispatched', 'processing') AND c.warn_at <= %(now)s) AS warning,
ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat
"""
CASE_FROM = """
FROM city.case_file c
LEFT JOIN city.event_class ec ON ec.code = c.event_class_code
LEFT JOIN city.responsible_unit u ON u.id = c.responsible_unit_id
"""


def _scope_sql(principal: Principal | None) -> tuple[str, dict]:
    """The cases a key may see, as a WHERE fragment over `c` and `u`."""
    if principal is None:
        return "true", {}
    clauses, params = ["true"], {}
    if principal.districts:
        clauses.append("c.district_code = ANY(%(scope_districts)s)")
        params["scope_districts"] = list(principal.districts)
    if principal.role == "field_unit":
        clauses.append("u.code = %(scope_unit)s")
        params["scope_unit"] = principal.responsible_unit
    return " AND ".join(clauses), params


async def route(conn: psycopg.AsyncConnection, lon: float, lat: float) -> dict:
    """{bgcode, district_code, responsible_unit_id} of a CGCS2000 point; InvalidInput outside every grid."""
    row = await (await conn.execute(ROUTE_SQL, {"lon": lon, "lat": lat})).fetchone()
    if row is None or row["bgcode"] is None:
        raise InvalidInput(f"the location {lon:.6f}, {lat:.6f} lies in no unit grid of the city")
    return row


async def _limit_hours(conn: psycopg.AsyncConnection, event_class_code: str | None) -> float:
    if event_class_code is None:
        return DEFAULT_LIMIT_HOURS
    row = await (await conn.execute("SELECT time_limit_hours FROM city.event_class WHERE code = %s", [event_class_code])).fetchone()
    if row is None:
        raise InvalidInput(f"unknown event class {event_class_code!r}; see city.event_class")
    return row["time_limit_hours"]


async def _now(conn: psycopg.AsyncConnection) -> datetime:
    return (await (await conn.execute("SELECT now() AS now")).fetchone())["now"]


async def open_case(conn: psycopg.AsyncConnection, *, source: CaseSource, lon: float, lat: float,
                    event_class_code: str | None = None, component_class_code: str | None = None,
                    objcode: str | None = None, description: str | None = None, address: str | None = None,
                    actor: str | None = None, alarm_id: int | None = None,
                    calendar: WorkingCalendar | None = None) -> dict:
    """Open a case at a CGCS2000 point in state 'reported' (信息采集), routed by its grid, with its
    first `case_event`. Its provisional deadline is its class's limit in working hours from now (the
    clock restarts at dispatch). Runs in the caller's transaction (or its own). Returns the case
    row plus `responsible_unit_id` (None: the manual dispatch queue)."""
    if source not in SOURCES:
        raise InvalidInput(f"unknown case source {source!r}; sources are {', '.join(SOURCES)}")
    if (event_class_code is None) == (component_class_code is None):
        raise InvalidInput("a case has either an event class or a component class")
    async with conn.transaction():
        where = await route(conn, lon, lat)
        now = await _now(conn)
        calendar = calendar or await read_calendar(conn)
        deadline = calendar.add_working_hours(now, await _limit_hours(conn, event_class_code))
        row = await (await conn.execute(OPEN_SQL, {
            "kind": "event" if event_class_code else "component", "event_class_code": event_class_code,
            "component_class_code": component_class_code, "objcode": objcode,
            "district_code": where["district_code"], "bgcode": where["bgcode"], "address": address,
            "description": description, "source": source, "lon": lon, "lat": lat, "now": now,
            "deadline_at": deadline, "responsible_unit_id": where["responsible_unit_id"], "alarm_id": alarm_id})).fetchone()
        await _record_event(conn, {"case_id": row["id"], "state": "reported", "action": "report", "actor": actor,
                                   "note": description, "reason": None, "approver": None, "details": None, "at": now})
    return {**row, "responsible_unit_id": where["responsible_unit_id"]}


async def _case_row(conn: psycopg.AsyncConnection, principal: Principal | None, case_id: int, now: datetime,
                    *, for_update: bool = False) -> dict:
    scope, params = _scope_sql(principal)
    lock = " FOR UPDATE OF c" if for_update else ""
    row = await (await conn.execute(
        f"SELECT {CASE_COLUMNS} {CASE_FROM} WHERE c.id = %(id)s AND {scope}{lock}",
        {"id": case_id, "now": now, "default_hours": DEFAULT_LIMIT_HOURS, **params})).fetchone()
    if row is None:
        raise NotFound(f"no case with id {case_id}")
    return row


async def get_case(conn: psycopg.AsyncConnection, principal: Principal | None, case_id: int) -> dict:
    """The case with its whole history, as the key may see it."""
    now = await _now(conn)
    case = await _case_row(conn, principal, case_id, now)
    events = await (await conn.execute(
        "SELECT id, action, state, at, actor, note, reason, approver, details FROM city.case_event "
        "WHERE case_id = %s ORDER BY at, id", [case_id])).fetchall()
    return {**case, "events": events}


async def list_cases(conn: psycopg.AsyncConnection, principal: Principal | None, *, state: str | None = None,
                     event_class_code: str | None = None, overdue: bool | None = None, unrouted: bool = False,
                     limit: int = 100, offset: int = 0) -> list[dict]:
    scope, params = _scope_sql(principal)
    clauses = [scope]
    if state:
        clauses.append("c.state = %(state)s")
    if event_class_code:
        clauses.append("c.event_class_code = %(event_class_code)s")
    if unrouted:
        clauses.append("c.responsible_unit_id IS NULL AND c.state IN ('reported', 'filed')")
    if overdue is not None:
        clauses.append(("" if overdue else "NOT ") + "(c.state IN ('dispatched', 'processing') AND c.deadline_at <= %(now)s)")
    now = await _now(conn)
    return await (await conn.execute(
        f"SELECT {CASE_COLUMNS} {CASE_FROM} WHERE {' AND '.join(clauses)} ORDER BY c.id DESC LIMIT %(limit)s OFFSET %(offset)s",
        {"now": now, "default_hours": DEFAULT_LIMIT_HOURS, "state": state, "event_class_code": event_class_code,
         "limit": limit, "offset": offset, **params})).fetchall()


async def _unit_for_dispatch(conn: psycopg.AsyncConnection, case: dict, unit_code: str | None) -> int:
    if unit_code is None:
        if case["responsible_unit_id"] is None:
            raise Conflict(f"case {case['case_no']} has no responsible unit from its grid (manual dispatch queue): "
                           "name the unit to dispatch it to")
        return case["responsible_unit_id"]
    unit = await (await conn.execute("SELECT id, district_code FROM city.responsible_unit WHERE code = %s", [unit_code])).fetchone()
    if unit is None:
        raise InvalidInput(f"unknown responsible unit {unit_code!r}")
    if unit["district_code"] != case["district_code"]:
        raise InvalidInput(f"unit {unit_code} works in district {unit['district_code']}; case {case['case_no']} "
                           f"lies in district {case['district_code']}")
    return unit["id"]


async def transition(conn: psycopg.AsyncConnection, principal: Principal, case_id: int, action: str, *,
                     note: str | None = None, reason: str | None = None, unit_code: str | None = None,
                     hours: float | None = None, passed: bool | None = None, evaluation: int | None = None,
                     photos: list[str] | None = None, calendar: WorkingCalendar | None = None) -> dict:
    """Take one step of the workflow; returns the case with its history."""
    step = STEPS.get(action)
    if step is None:
        raise InvalidInput(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
    principal.require(step.role)
    if step.exceptional and not (reason and reason.strip()):
        raise InvalidInput(f"{action} ({step.title}) needs a reason")
    async with conn.transaction():
        now = await _now(conn)
        case = await _case_row(conn, principal, case_id, now, for_update=True)
        if case["state"] not in step.from_states:
            raise Conflict(f"case {case['case_no']} is {case['state']!r}; {action} ({step.title}) needs a case that is "
                           f"{' or '.join(repr(s) for s in step.from_states)}")
        calendar = calendar or await read_calendar(conn)
        sets: dict[str, object] = {}
        details: dict[str, object] = {}
        to_state = step.to_state
        if action == "file":
            sets["filed_at"] = now
        elif action == "dispatch":
            unit_id = await _unit_for_dispatch(conn, case, unit_code)
            hours_allowed = case["time_limit_hours"]
            sets.update(responsible_unit_id=unit_id, dispatched_at=now, handled_at=None, warned_at=None, escalated_at=None,
                        deadline_at=calendar.add_working_hours(now, hours_allowed),
                        warn_at=calendar.add_working_hours(now, WARN_SHARE * hours_allowed))
            details["unit_id"] = unit_id
        elif action == "handle":
            sets["handled_at"] = now
            if photos:
                details["photos"] = photos
        elif action == "check":
            if passed is None:
                raise InvalidInput("check needs passed: true (核查通过) or false (rework: back to the unit)")
            details["passed"] = passed
            if passed:
                to_state, sets["checked_at"] = "checked", now
            else:  # 返工: the unit handles it again, on the clock it had
                to_state, sets["handled_at"] = "processing", None
        elif action == "close":
            sets["closed_at"] = now
        elif action == "evaluate":
            if evaluation is None or not 1 <= evaluation <= 5:
                raise InvalidInput("evaluate needs evaluation between 1 and 5")
            sets.update(evaluated_at=now, evaluation=evaluation)
        elif action == "return":
            sets.update(responsible_unit_id=None, deadline_at=None, warn_at=None, warned_at=None, escalated_at=None)
        elif action == "extend":
            if hours is None or not 0 < hours <= 720:
                raise InvalidInput("extend needs hours between 0 and 720 (working hours added to the limit)")
            total = calendar.working_hours_between(case["dispatched_at"], case["deadline_at"]) + hours
            deadline = calendar.add_working_hours(case["dispatched_at"], total)
            warn = calendar.add_working_hours(case["dispatched_at"], WARN_SHARE * total)
            sets.update(deadline_at=deadline, warn_at=warn)
            if warn > now:
                sets["warned_at"] = None
            if deadline > now:
                sets["escalated_at"] = None
            details.update(hours=hours, deadline_at=deadline.isoformat())
        elif action == "defer":  # 缓办: the clock stops; what is left of it runs again on resume
            details["remaining_hours"] = calendar.working_hours_between(now, case["deadline_at"])
        elif action == "resume":
            remaining = await (await conn.execute(
                "SELECT (details->>'remaining_hours')::float8 AS h FROM city.case_event "
                "WHERE case_id = %s AND action = 'defer' ORDER BY at DESC, id DESC LIMIT 1", [case_id])).fetchone()
            left = remaining["h"] if remaining and remaining["h"] is not None else case["time_limit_hours"]
            total = case["time_limit_hours"]
            sets.update(deadline_at=calendar.add_working_hours(now, left),
                        warn_at=calendar.add_working_hours(now, max(0.0, left - (1 - WARN_SHARE) * total)),
                        warned_at=None, escalated_at=None)
        new_state = to_state or case["state"]
        sets["state"] = new_state
        await conn.execute(
            "UPDATE city.case_file SET " + ", ".join(f"{column} = %({column})s" for column in sets) + " WHERE id = %(id)s",
            {**sets, "id": case_id})
        await _record_event(conn, {
            "case_id": case_id, "state": new_state, "action": action, "actor": principal.name, "note": note,
            "reason": reason, "approver": principal.name if step.exceptional else None,
            "details": Jsonb(details) if details else None, "at": now})
    return await get_case(conn, principal, case_id)


SWEEP_SQL = """
WITH warned AS (
    UPDATE city.case_file SET warned_at = %(now)s
    WHERE state IN ('dispatched', 'processing') AND warn_at <= %(now)s AND warned_at IS NULL
    RETURNING id, state, 'warn' AS action, '时限预警: 80%% of the time limit used' AS note
), escalated AS (
    UPDATE city.case_file SET escalated_at = %(now)s
    WHERE state IN ('dispatched', 'processing') AND deadline_at <= %(now)s AND escalated_at IS NULL
    RETURNING id, state, 'escalate' AS action, '督办: the time limit has passed' AS note
), events AS (
    INSERT INTO city.case_event (case_id, state, action, actor, note, at)
    SELECT id, state, action, 'system', note, %(now)s FROM (SELECT * FROM warned UNION ALL SELECT * FROM escalated) e
    RETURNING action
)
SELECT count(*) FILTER (WHERE action = 'warn') AS warned, count(*) FILTER (WHERE action = 'escalate') AS escalated FROM events
"""


async def sweep_deadlines(conn: psycopg.AsyncConnection, now: datetime | None = None) -> dict:
    """Warn cases at 80 % of their limit and escalate (督办) those past it, once each; a case_event each."""
    async with conn.transaction():
        now = now or await _now(conn)
        await partitions.CASE_EVENTS.ensure(conn, {partitions.month_of(now)})
        row = await (await conn.execute(SWEEP_SQL, {"now": now})).fetchone()
    return {"warned": row["warned"], "escalated": row["escalated"]}



# The citizen desk (ops.reports) decides on a public report's case: accepting files it (立案),
# rejecting or merging it as a duplicate voids it, and an operator may close it as fixed (结案).
# Each decision is checked against the state the case is in and written with its case_event here,
# like every other step.
DESK_DECISIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "accept": ("filed", ("reported",)),
    "reject": ("voided", ("reported", "filed")),
    "merge": ("voided", ("reported", "filed")),
    "close": ("closed", ("reported", "filed", "dispatched", "processing", "handled", "checked", "deferred")),
}
DESK_SQL = """
UPDATE city.case_file SET state = %(state)s,
    filed_at = CASE WHEN %(state)s = 'filed' THEN coalesce(filed_at, %(now)s) ELSE filed_at END,
    closed_at = CASE WHEN %(state)s = 'closed' THEN %(now)s ELSE closed_at END
WHERE id = %(id)s AND state = ANY(%(from_states)s)
RETURNING id
"""


async def record_desk_decision(conn: psycopg.AsyncConnection, case_id: int, decision: str, actor: str, note: str) -> None:
    """A citizen desk's decision on a public report's case (in the caller's transaction); a Conflict
    if the case is no longer in a state the decision applies to."""
    to_state, from_states = DESK_DECISIONS[decision]
    now = await _now(conn)
    row = await (await conn.execute(DESK_SQL, {"id": case_id, "state": to_state, "now": now,
                                               "from_states": list(from_states)})).fetchone()
    if row is None:
        raise Conflict(f"case {case_id} cannot be {to_state} by the citizen desk from the state it is in now")
    await _record_event(conn, {"case_id": case_id, "state": to_state, "action": f"desk_{decision}", "actor": actor,
                               "note": note, "reason": None, "approver": None, "details": None, "at": now})
