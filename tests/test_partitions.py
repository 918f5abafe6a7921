"""Alarms and case events partitioned by month (migration 0017): data kept both ways through the
migration, one open alarm per cover and type under concurrent writers, the wall's queries reading
only the months they need (EXPLAIN ANALYZE), and retention by dropping whole months."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import date, datetime, timezone

import psycopg
import pytest
from psycopg.rows import dict_row

from gis import migrate
from gis.db import open_connection
from layers.catalogue import CATALOGUE
from ops import alarms, partitions
from ops.figures import CITY_TIME_ZONE, FIGURES_SQL
from ops.live_alarms import OPEN_ALARMS_SQL
from tests.test_cli import cityops

WRITERS = 8


@pytest.fixture(scope="module")
def part_db(databases) -> str:
    """A database of its own holding the demo city (this module downgrades and drops months)."""
    return databases.demo_city("partitions")


def _fingerprint(conn: psycopg.Connection) -> dict:
    return {
        "alarms": conn.execute(
            "SELECT count(*) AS n, md5(string_agg(concat_ws('|', id, objcode, alarm_type, severity, status, reading, raised_at, "
            "cleared_at, ST_AsText(geom), geom_3857 IS NOT NULL, district_code, flapping), ',' ORDER BY id)) AS digest FROM city.alarm").fetchone(),
        "open": [r["id"] for r in conn.execute("SELECT id FROM city.alarm WHERE status <> 'cleared' ORDER BY id")],
        "events": conn.execute(
            "SELECT count(*) AS n, md5(string_agg(concat_ws('|', id, case_id, state, at, actor, note, action, reason, approver, details), "
            "',' ORDER BY id)) AS digest FROM city.case_event").fetchone(),
    }


def test_the_demo_load_leaves_every_month_with_its_tables_indexes(part_db: str):
    """The loader drops and rebuilds indexes around its COPY: a partitioned index rebuilt "ON ONLY"
    the table would cover no month at all."""
    with open_connection(part_db) as conn:
        for parent in ("city.alarm", "city.case_event"):
            rows = conn.execute(
                "SELECT c.relname, count(x.indexrelid) FILTER (WHERE x.indisvalid) AS valid, "
                "(SELECT count(*) FROM pg_index p WHERE p.indrelid = %s::regclass) AS wanted "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid LEFT JOIN pg_index x ON x.indrelid = c.oid "
                "WHERE i.inhparent = %s::regclass GROUP BY c.relname", [parent, parent]).fetchall()
            assert len(rows) >= 12 and rows[0]["wanted"] >= 2
            assert all(r["valid"] == r["wanted"] for r in rows), rows
            assert conn.execute("SELECT bool_and(indisvalid) AS ok FROM pg_index WHERE indrelid = %s::regclass",
                                [parent]).fetchone()["ok"]


def _relkind(conn: psycopg.Connection, table: str) -> str:
    return conn.execute("SELECT relkind::text AS k FROM pg_class WHERE oid = %s::regclass", [table]).fetchone()["k"]


def _free_cover(conn: psycopg.Connection, offset: int = 0) -> str:
    return conn.execute("SELECT s.objcode FROM city.manhole_sensor s WHERE NOT EXISTS (SELECT 1 FROM city.alarm_open o "
                        "WHERE o.objcode = s.objcode) ORDER BY s.objcode OFFSET %s LIMIT 1", [offset]).fetchone()["objcode"]


def test_downgrade_and_upgrade_keep_every_alarm_and_case_event(part_db: str):
    with open_connection(part_db) as conn:
        before = _fingerprint(conn)
        assert before["alarms"]["n"] > 1000 and before["events"]["n"] > 10000 and before["open"]
        assert _relkind(conn, "city.alarm") == "p" and _relkind(conn, "city.case_event") == "p"
        assert [r["alarm_id"] for r in conn.execute("SELECT alarm_id FROM city.alarm_open ORDER BY alarm_id")] == before["open"]
    migrate.downgrade(part_db, "0015")
    with open_connection(part_db) as conn:
        assert _relkind(conn, "city.alarm") == "r" and _relkind(conn, "city.case_event") == "r"
        assert _fingerprint(conn) == before
        assert conn.execute("SELECT to_regclass('city.alarm_one_open_idx') IS NOT NULL AS back").fetchone()["back"]
    migrate.upgrade(part_db)
    with open_connection(part_db) as conn:
        assert _relkind(conn, "city.alarm") == "p" and _fingerprint(conn) == before
        assert [r["alarm_id"] for r in conn.execute("SELECT alarm_id FROM city.alarm_open ORDER BY alarm_id")] == before["open"]
        # ids go on from their sequences
        cover = _free_cover(conn)
        new_id = conn.execute("INSERT INTO city.alarm (objcode, alarm_type) VALUES (%s, 'methane') RETURNING id", [cover]).fetchone()["id"]
        assert new_id > max(before["open"])
        conn.rollback()


def _race(part_db: str, objcode: str, *, first_rolls_back: bool = False) -> list[str]:
    """WRITERS connections insert an open alarm for one cover and type at once, each holding its
    transaction a moment; returns each writer's outcome."""
    barrier = threading.Barrier(WRITERS)
    outcomes: list[str] = [""] * WRITERS

    def writer(k: int) -> None:
        with psycopg.connect(part_db) as conn:
            barrier.wait()
            try:
                conn.execute("INSERT INTO city.alarm (objcode, alarm_type, reading) VALUES (%s, 'overflow', %s)", [objcode, k])
                time.sleep(0.3)
                if first_rolls_back and k == 0:
                    conn.rollback()
                    outcomes[k] = "rolled back"
                    return
                conn.commit()
                outcomes[k] = "open"
            except psycopg.errors.UniqueViolation as error:
                outcomes[k] = f"refused by {error.diag.constraint_name}"

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(outcomes), f"a writer hung: {outcomes}"
    return outcomes


def test_one_open_alarm_per_cover_and_type_under_concurrent_writers(part_db: str):
    with open_connection(part_db) as conn:
        cover = _free_cover(conn, offset=3)
    outcomes = _race(part_db, cover)
    assert outcomes.count("open") == 1 and outcomes.count("refused by alarm_one_open") == WRITERS - 1, outcomes
    with open_connection(part_db) as conn:
        rows = conn.execute("SELECT id, status FROM city.alarm WHERE objcode = %s AND alarm_type = 'overflow' AND status <> 'cleared'",
                            [cover]).fetchall()
        assert len(rows) == 1
        # cleared, the cover may raise again; the cleared alarm stays in its month
        conn.execute("UPDATE city.alarm SET status = 'cleared', cleared_at = now() WHERE id = %s", [rows[0]["id"]])
        conn.commit()
        assert not conn.execute("SELECT 1 FROM city.alarm_open WHERE alarm_id = %s", [rows[0]["id"]]).fetchone()
    # the first writer holds the slot and then rolls back: exactly one of those waiting gets it
    outcomes = _race(part_db, cover, first_rolls_back=True)
    assert outcomes.count("open") == 1 and outcomes.count("rolled back") <= 1, outcomes
    with open_connection(part_db) as conn:
        assert conn.execute("SELECT count(*) AS n FROM city.alarm WHERE objcode = %s AND alarm_type = 'overflow'",
                            [cover]).fetchone()["n"] == 2


def test_the_rule_engine_refuses_a_second_open_alarm_and_its_transaction_goes_on(part_db: str):
    with open_connection(part_db) as conn:
        cover = _free_cover(conn, offset=5)

    async def raise_once(barrier: asyncio.Barrier):
        async with await psycopg.AsyncConnection.connect(part_db, row_factory=dict_row) as conn:
            async with conn.transaction():
                await barrier.wait()
                alarm = await alarms.insert_open_alarm(conn, alarms.RAISE_SQL, {
                    "objcode": cover, "alarm_type": "methane", "severity": 1, "reading": 9000.0,
                    "at": datetime.now(timezone.utc), "flapping": False})
                await asyncio.sleep(0.2)
                # the transaction is usable after a refusal
                assert (await (await conn.execute("SELECT 1 AS one")).fetchone())["one"] == 1
                return alarm

    async def race():
        barrier = asyncio.Barrier(WRITERS)
        return await asyncio.gather(*(raise_once(barrier) for _ in range(WRITERS)))
    results = asyncio.run(race())
    assert sum(r is not None for r in results) == 1, results


def test_an_alarm_stamped_in_a_month_not_yet_made_makes_its_partition(part_db: str):
    with open_connection(part_db) as conn:
        cover = _free_cover(conn, offset=12)
        assert "alarm_202103" not in _month_names(conn, "alarm")

    async def raise_in_march_2021():
        async with await psycopg.AsyncConnection.connect(part_db, row_factory=dict_row) as conn:
            at = datetime(2021, 3, 31, 23, 59, 30, tzinfo=timezone.utc)
            alarm = await alarms.insert_open_alarm(conn, alarms.RAISE_SQL, {
                "objcode": cover, "alarm_type": "displacement", "severity": 2, "reading": 12.0, "at": at, "flapping": False}, at)
            await conn.rollback()  # the partition goes with the transaction, and is made again next time
            again = await alarms.insert_open_alarm(conn, alarms.RAISE_SQL, {
                "objcode": cover, "alarm_type": "displacement", "severity": 2, "reading": 12.0, "at": at, "flapping": False}, at)
            await conn.commit()
            return alarm, again
    first, again = asyncio.run(raise_in_march_2021())
    assert first is not None and again is not None
    with open_connection(part_db) as conn:
        assert "alarm_202103" in _month_names(conn, "alarm")
        row = conn.execute("SELECT tableoid::regclass::text AS part FROM city.alarm WHERE id = %s", [again["id"]]).fetchone()
        assert row["part"] == "city.alarm_202103"
        conn.execute("UPDATE city.alarm SET status = 'cleared', cleared_at = raised_at WHERE id = %s", [again["id"]])
        conn.commit()


def _scanned(conn: psycopg.Connection, query: str, params, parent: str) -> set[str]:
    """The partitions of `parent` the query actually read (EXPLAIN ANALYZE: pruned ones are absent or never executed)."""
    plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()
    read = set()

    def walk(node: dict) -> None:
        if re.fullmatch(parent + r"_\d{6}", node.get("Relation Name", "")) and node.get("Actual Loops", 0) > 0:
            read.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)
    walk(next(iter(plan.values()))[0]["Plan"])
    return read


def _month_names(conn: psycopg.Connection, parent: str) -> set[str]:
    return {r["relname"] for r in conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                              "WHERE i.inhparent = %s::regclass", [f"city.{parent}"])}


def _from_month(names: set[str], parent: str, first: date) -> set[str]:
    return {n for n in names if n.removeprefix(parent + "_") >= f"{first:%Y%m}"}


def test_the_walls_queries_read_only_the_months_they_need(part_db: str):
    layer = next(layer for layer in CATALOGUE if layer.id == "alarms")
    layer_sql = f"SELECT count(*) FROM {layer.relation} WHERE {layer.where}"
    with open_connection(part_db) as conn:
        oldest_open = conn.execute("SELECT min(raised_at) AS t FROM city.alarm WHERE status <> 'cleared'").fetchone()["t"]
        alarm_months = _month_names(conn, "alarm")
        needed = _from_month(alarm_months, "alarm", partitions.month_of(oldest_open))
        assert len(alarm_months) - len(needed) >= 10, "the demo city's year of alarms spans a dozen months"
        for query in (OPEN_ALARMS_SQL, layer_sql):
            read = _scanned(conn, query, None, "alarm")
            assert read and read <= needed, (query, read, needed)
        figures_read = _scanned(conn, FIGURES_SQL, {"tz": CITY_TIME_ZONE}, "case_event")
        earliest = conn.execute("SELECT min(reported_at) AS t FROM city.case_file WHERE handled_at >= now() - interval '30 days' "
                                "AND deadline_at IS NOT NULL").fetchone()["t"]
        event_months = _month_names(conn, "case_event")
        assert figures_read <= _from_month(event_months, "case_event", partitions.month_of(earliest))
        assert len(event_months - figures_read) >= 8
        assert not _scanned(conn, FIGURES_SQL, {"tz": CITY_TIME_ZONE}, "alarm"), "open alarms are counted in city.alarm_open"
        # an alarm left open since an old month is still on the wall: that month is read again
        cover = _free_cover(conn, offset=7)
        conn.execute("SELECT city.ensure_month_partitions('city.alarm', '2023-02-01', '2023-02-01')")
        old = conn.execute("INSERT INTO city.alarm (objcode, alarm_type, raised_at) VALUES (%s, 'opened', '2023-02-10T08:00:00Z') "
                           "RETURNING id", [cover]).fetchone()["id"]
        assert "alarm_202302" in _scanned(conn, OPEN_ALARMS_SQL, None, "alarm")
        shown = conn.execute(OPEN_ALARMS_SQL).fetchone()["collection"]["features"]
        assert old in {f["id"] for f in shown}
        conn.rollback()


def test_retention_drops_whole_old_months_but_never_a_live_one(part_db: str):
    with open_connection(part_db) as conn:
        conn.execute("SELECT city.ensure_month_partitions(%s::regclass, '2022-05-01', '2022-06-30')", ["city.alarm"])
        conn.execute("SELECT city.ensure_month_partitions(%s::regclass, '2022-05-01', '2022-06-30')", ["city.case_event"])
        cleared_cover, open_cover = _free_cover(conn, offset=9), _free_cover(conn, offset=10)
        conn.execute("INSERT INTO city.alarm (objcode, alarm_type, raised_at, status, cleared_at) "
                     "VALUES (%s, 'overflow', '2022-05-03Z', 'cleared', '2022-05-04Z')", [cleared_cover])
        kept_alarm = conn.execute("INSERT INTO city.alarm (objcode, alarm_type, raised_at) VALUES (%s, 'overflow', '2022-06-03Z') "
                                  "RETURNING id", [open_cover]).fetchone()["id"]
        closed_case = conn.execute("SELECT id FROM city.case_file WHERE state = 'closed' ORDER BY id LIMIT 1").fetchone()["id"]
        open_case = conn.execute("SELECT id FROM city.case_file WHERE state = 'dispatched' ORDER BY id LIMIT 1").fetchone()["id"]
        conn.execute("INSERT INTO city.case_event (case_id, state, action, at) VALUES (%s, 'closed', 'note', '2022-05-20Z'), "
                     "(%s, 'dispatched', 'note', '2022-06-20Z')", [closed_case, open_case])
        conn.commit()
        alarm_months, event_months = _month_names(conn, "alarm"), _month_names(conn, "case_event")
    result = cityops("db", "retention", "--alarm-months", "24", "--case-event-months", "24", env={"CITYOPS_DATABASE_URL": part_db})
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stderr.split())
    outcome = dict(re.findall(r"(city\.\w+): dropped \d+ month\(s\): ([^;]*?)(?=; kept| city\.|$)", out))
    kept = dict(re.findall(r"(city\.\w+): [^;]*; kept, still live: ([\w, ]+?)(?= city\.|$)", out))
    assert "alarm_202205" in outcome["city.alarm"] and kept["city.alarm"] == "alarm_202206", out
    assert "case_event_202205" in outcome["city.case_event"] and kept["city.case_event"] == "case_event_202206", out
    with open_connection(part_db) as conn:
        first_kept = f"{partitions.add_months(partitions.month_of(date.today()), -23):%Y%m}"
        old_months = {m for m in alarm_months | event_months if m.rsplit("_", 1)[1] < first_kept}
        assert _month_names(conn, "alarm") == alarm_months - old_months | {"alarm_202206"}
        assert _month_names(conn, "case_event") == event_months - old_months | {"case_event_202206"}
        assert conn.execute("SELECT status FROM city.alarm WHERE id = %s", [kept_alarm]).fetchone()["status"] == "open"
        assert conn.execute("SELECT count(*) AS n FROM city.case_file WHERE id = %s", [closed_case]).fetchone()["n"] == 1
        # the coming months are made ahead
        ahead = partitions.add_months(partitions.month_of(date.today()), partitions.MONTHS_AHEAD)
        assert f"alarm_{ahead:%Y%m}" in _month_names(conn, "alarm") and f"case_event_{ahead:%Y%m}" in _month_names(conn, "case_event")
        conn.execute("DELETE FROM city.alarm WHERE id = %s", [kept_alarm])
        conn.execute("DELETE FROM city.case_event WHERE at < '2023-01-01'")
        conn.commit()
    again = cityops("db", "retention", "--alarm-months", "24", "--case-event-months", "24", env={"CITYOPS_DATABASE_URL": part_db})
    assert again.returncode == 0 and "dropped 1 month(s): alarm_202206" in " ".join(again.stderr.split()), again.stderr
