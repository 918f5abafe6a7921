"""The working calendar (工作日历) that case time limits run on: working periods per ISO weekday, and
days that differ from their weekday (法定节假日 holidays, and the 调休 make-up working days, which
keep Monday's hours). Times are Asia/Shanghai; the calendar is data (city.working_period,
city.calendar_day), loaded from YAML for a city (`load_calendar`).

A time limit of H working hours ends where H hours of working periods have passed after the start;
a start outside working time waits for the next period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import yaml

from gis.errors import InvalidInput

CITY_TZ = ZoneInfo("Asia/Shanghai")
MAKE_UP_WEEKDAY = 1
# A limit that finds no working time within this many days has a calendar without working days.
SEARCH_DAYS = 3660


@dataclass(frozen=True)
class WorkingCalendar:
    periods: dict[int, tuple[tuple[time, time], ...]]  # ISO weekday -> working periods
    days: dict[date, bool]  # day -> working, where it differs from its weekday

    def periods_of(self, day: date) -> tuple[tuple[time, time], ...]:
        working = self.days.get(day)
        if working is None:
            return self.periods.get(day.isoweekday(), ())
        if not working:
            return ()
        return self.periods.get(day.isoweekday()) or self.periods.get(MAKE_UP_WEEKDAY, ())

    def _spans(self, start: datetime):
        """Working spans (local aware datetimes) from `start` on, in order."""
        local = start.astimezone(CITY_TZ)
        day = local.date()
        for _ in range(SEARCH_DAYS):
            for begins, ends in self.periods_of(day):
                span_start = datetime.combine(day, begins, CITY_TZ)
                span_end = datetime.combine(day, ends, CITY_TZ)
                if span_end <= local:
                    continue
                yield max(span_start, local), span_end
            day += timedelta(days=1)
        raise InvalidInput("the working calendar has no working time in the next ten years")

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The instant `hours` working hours after `start`."""
        left = timedelta(hours=hours)
        for span_start, span_end in self._spans(start):
            if span_end - span_start >= left:
                return span_start + left
            left -= span_end - span_start
        raise AssertionError("unreachable")

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours from `start` to `end` (0 if end is not later)."""
        total = timedelta()
        if end <= start:
            return 0.0
        for span_start, span_end in self._spans(start):
            if span_start >= end:
                break
            total += min(span_end, end) - span_start
        return total.total_seconds() / 3600


async def read_calendar(conn: psycopg.AsyncConnection) -> WorkingCalendar:
    periods: dict[int, list[tuple[time, time]]] = {}
    for row in await (await conn.execute("SELECT weekday, starts, ends FROM city.working_period ORDER BY weekday, starts")).fetchall():
        periods.setdefault(row["weekday"], []).append((row["starts"], row["ends"]))
    days = {row["day"]: row["working"] for row in await (await conn.execute("SELECT day, working FROM city.calendar_day")).fetchall()}
    return WorkingCalendar({k: tuple(v) for k, v in periods.items()}, days)


def parse_calendar(document: dict) -> tuple[list[tuple[int, time, time]], list[tuple[date, bool, str]]]:
    """(periods, days) of a calendar document: `working_hours: {1: ["08:30-12:00", …], …}`,
    `holidays: {name: [dates or "from..to"]}`, `make_up_days: {name: [dates]}`."""
    try:
        periods = []
        for weekday, spans in (document.get("working_hours") or {}).items():
            for span in spans:
                begins, ends = (time.fromisoformat(part.strip()) for part in str(span).split("-"))
                if not 1 <= int(weekday) <= 7 or ends <= begins:
                    raise ValueError(f"bad working period {weekday}: {span}")
                periods.append((int(weekday), begins, ends))
        days = []
        for key, working in (("holidays", False), ("make_up_days", True)):
            for name, entries in (document.get(key) or {}).items():
                for entry in entries:
                    first, _, last = str(entry).partition("..")
                    day, end = date.fromisoformat(first.strip()), date.fromisoformat((last or first).strip())
                    while day <= end:
                        days.append((day, working, name))
                        day += timedelta(days=1)
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"invalid working calendar: {exc}") from exc
    return periods, days


def load_calendar(conn: psycopg.Connection, path: Path) -> dict[str, int]:
    """Replace the working calendar by a YAML file's, in the caller's transaction."""
    periods, days = parse_calendar(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    if periods:
        conn.execute("DELETE FROM city.working_period")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO city.working_period (weekday, starts, ends) VALUES (%s, %s, %s)", periods)
    conn.execute("DELETE FROM city.calendar_day")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO city.calendar_day (day, working, name) VALUES (%s, %s, %s) "
                        "ON CONFLICT (day) DO UPDATE SET working = excluded.working, name = excluded.name", days)
    return {"periods": len(periods), "days": len(days)}
