"""Demo-city load speed: `cityops demo` (generate + COPY into the constrained, indexed schema)
against a plain COPY of the very same rows into bare tables (no constraints, indexes or generated
columns), in the same run on the same server. Prints rows/s and the ratio.

    .venv/bin/python bench/bench_demo_load.py --scale 10
"""

from __future__ import annotations

import argparse
import io
import time

from psycopg import sql

from gis import migrate, provision
from gis.db import open_connection
from gis.settings import Settings
from layers.demo.load import CITY_TABLES, write_city
from layers.demo.plan import plan_city
from layers.demo.population import now_utc, populate

DATABASE = "cityops_bench_demo"


def loaded_columns(conn, table: str) -> list[str]:
    """The columns the loader writes: everything but generated columns."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'city' AND table_name = %s "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position", [table]).fetchall()
    return [r["column_name"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    args = parser.parse_args()

    settings = Settings()
    provision.start_server(settings)
    provision.drop_database(settings, DATABASE)
    info = provision.create_database(settings, DATABASE)
    migrate.upgrade(info)

    started = time.perf_counter()
    plans = plan_city()
    population = populate(plans, scale=args.scale, now=now_utc())
    generated_s = time.perf_counter() - started

    with open_connection(info) as conn:
        started = time.perf_counter()
        summary = write_city(conn, plans, population)
        conn.commit()
        ours_s = time.perf_counter() - started
        rows = summary.total

        # The same rows as COPY text, then a plain COPY of them into bare tables.
        payloads = {}
        for table in CITY_TABLES:
            columns = loaded_columns(conn, table)
            buffer = io.BytesIO()
            statement = sql.SQL("COPY {} ({}) TO STDOUT").format(
                sql.Identifier("city", table), sql.SQL(", ").join(map(sql.Identifier, columns)))
            with conn.cursor().copy(statement) as copy:
                for chunk in copy:
                    buffer.write(chunk)
            payloads[table] = (columns, buffer.getvalue())
        conn.execute("CREATE SCHEMA plain")
        for table, (columns, _) in payloads.items():
            conn.execute(sql.SQL("CREATE TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                sql.Identifier("plain", table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier("city", table)))
        conn.commit()
        started = time.perf_counter()
        for table, (columns, payload) in payloads.items():
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier("plain", table), sql.SQL(", ").join(map(sql.Identifier, columns)))
            with conn.cursor().copy(statement) as copy:
                copy.write(payload)
        conn.commit()
        plain_s = time.perf_counter() - started

    components = summary.rows["component"]
    print(f"scale {args.scale}: {rows:,} rows ({components:,} components)")
    print(f"generate (Python, vectorised)        {generated_s:8.1f} s")
    print(f"cityops demo load (COPY + checks)    {ours_s:8.1f} s  {rows / ours_s:12,.0f} rows/s")
    print(f"plain COPY, same rows, bare tables   {plain_s:8.1f} s  {rows / plain_s:12,.0f} rows/s")
    print(f"ratio (ours / plain COPY rows/s)     {plain_s / ours_s:8.2f}")
    print(f"generate + load end to end           {generated_s + ours_s:8.1f} s  {rows / (generated_s + ours_s):12,.0f} rows/s")
    provision.drop_database(settings, DATABASE)


if __name__ == "__main__":
    main()
