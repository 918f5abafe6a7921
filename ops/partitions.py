"""The month partitions of the operations tables that grow with time: sensor readings, alarms and
case events (partitioned by range of their time column, one partition `<table>_YYYYMM` per UTC
month). Partitions are made ahead of time by the sweep and on first use by a writer stamping an
older time; retention detaches and drops whole months, partman-style, but never a month that
still holds something live (an open alarm, an event of a case not yet closed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import psycopg
from psycopg import sql

# Months made ahead of the current one (as migration 0017 does), so a write stamped now() never
# has to make a partition (which locks the whole table until its transaction ends).
MONTHS_AHEAD = 2
# A case's events stop changing when the case is closed, evaluated or voided.
CASE_FINISHED_STATES = ("closed", "evaluated", "voided")


def month_of(moment: datetime | date) -> date:
    if isinstance(moment, datetime):
        moment = moment.astimezone(timezone.utc).date()
    return moment.replace(day=1)


def _database(conn: psycopg.AsyncConnection) -> str:
    return f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


@dataclass
class MonthPartitions:
    """One partitioned table. `live_sql` (over one partition, `{part}`; one boolean column `live`)
    tells whether a month holds rows retention must keep. Connections give rows as dicts."""

    table: str
    live_sql: str | None = None
    # (database, month) seen made: one process may serve several databases (tests, tools)
    known: set[tuple[str, date]] = field(default_factory=set)

    @property
    def qualified(self) -> str:
        return f"city.{self.table}"

    async def ensure(self, conn: psycopg.AsyncConnection, months: set[date]) -> None:
        """Make the partitions of these months (first days) unless this process knows them made.
        Runs in the caller's transaction: a month is remembered only once seen made and committed
        by someone, so a rolled-back making is made again."""
        database = _database(conn)
        for month in sorted(months):
            if (database, month) in self.known:
                continue
            first_day = datetime(month.year, month.month, 1, tzinfo=timezone.utc)
            row = await (await conn.execute("SELECT city.ensure_month_partitions(%s::regclass, %s, %s) AS made",
                                            [self.qualified, first_day, first_day])).fetchone()
            if row["made"] == 0:
                self.known.add((database, month))

    async def ensure_ahead(self, conn: psycopg.AsyncConnection) -> None:
        first = month_of(datetime.now(timezone.utc))
        await self.ensure(conn, {add_months(first, n) for n in range(MONTHS_AHEAD + 1)})

    async def months(self, conn: psycopg.AsyncConnection) -> list[tuple[date, str]]:
        rows = await (await conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname", [self.qualified])).fetchall()
        return [(datetime.strptime(r["relname"].removeprefix(self.table + "_"), "%Y%m").date(), r["relname"]) for r in rows]

    async def drop_months_before(self, conn: psycopg.AsyncConnection, keep_from: date) -> tuple[list[str], list[str]]:
        """Retention: detach and drop every month wholly before `keep_from`'s month, each in its own
        transaction; returns (dropped, kept because live)."""
        first_kept = month_of(keep_from)
        dropped, kept = [], []
        for month, name in await self.months(conn):
            if month >= first_kept:
                continue
            partition = sql.Identifier("city", name)
            async with conn.transaction():
                if self.live_sql is not None:
                    live = await (await conn.execute(sql.SQL(self.live_sql).format(part=partition))).fetchone()
                    if live["live"]:
                        kept.append(name)
                        continue
                await conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    sql.Identifier("city", self.table), partition))
                await conn.execute(sql.SQL("DROP TABLE {}").format(partition))
            self.known.discard((_database(conn), month))
            dropped.append(name)
        return dropped, kept


READINGS = MonthPartitions("sensor_reading")
ALARMS = MonthPartitions("alarm", live_sql="SELECT EXISTS (SELECT 1 FROM {part} WHERE status <> 'cleared') AS live")
CASE_EVENTS = MonthPartitions("case_event", live_sql=(
    "SELECT EXISTS (SELECT 1 FROM {part} e JOIN city.case_file c ON c.id = e.case_id "
    f"WHERE c.state NOT IN ({', '.join(repr(s) for s in CASE_FINISHED_STATES)})) AS live"))
PARTITIONED = (READINGS, ALARMS, CASE_EVENTS)


async def ensure_ahead(conn: psycopg.AsyncConnection) -> None:
    """This month's and the next months' partitions of every partitioned operations table."""
    for table in PARTITIONED:
        await table.ensure_ahead(conn)
