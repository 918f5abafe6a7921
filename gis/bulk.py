"""Bulk loading into empty tables the way pg_restore does it: drop the indexes and foreign keys,
COPY, then rebuild them once over all rows, inside the caller's transaction.

Building a GiST index over a million rows at once (sorted build) and checking a foreign key with
one set-wise join are many times cheaper than maintaining both row by row; since the DDL is
transactional, a failed load still leaves the schema and data exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql

DEFINITIONS_SQL = """
SELECT 'index' AS kind, i.indexrelid::regclass::text AS name,
       -- a partitioned table's index reads "ON ONLY": made so, it would cover none of the partitions
       regexp_replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ') AS definition,
       c.oid::regclass::text AS owner
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE c.oid = ANY(%(tables)s::regclass[]) AND NOT i.indisprimary AND NOT i.indisunique
UNION ALL
SELECT 'fkey', con.conname, pg_get_constraintdef(con.oid), con.conrelid::regclass::text
FROM pg_constraint con
WHERE con.contype = 'f' AND (con.conrelid = ANY(%(tables)s::regclass[]) OR con.confrelid = ANY(%(tables)s::regclass[]))
  AND con.conparentid = 0  -- a partition's copy of its table's key comes and goes with the table's
"""


@contextmanager
def rebuilt_after_load(conn: psycopg.Connection, tables: Sequence[str]) -> Iterator[None]:
    """Within the current transaction: drop secondary indexes and foreign keys touching `tables`,
    let the caller load, then recreate them (the foreign keys are validated over all rows)."""
    rows = conn.execute(DEFINITIONS_SQL, {"tables": list(tables)}).fetchall()
    fkeys = [r for r in rows if r["kind"] == "fkey"]
    indexes = [r for r in rows if r["kind"] == "index"]
    for fkey in fkeys:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            sql.SQL(fkey["owner"]), sql.Identifier(fkey["name"])))
    for index in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index["name"])))
    yield
    # Definitions come from the catalog (pg_get_indexdef/pg_get_constraintdef), not from users.
    for index in indexes:
        conn.execute(index["definition"])
    for fkey in fkeys:
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.SQL(fkey["owner"]), sql.Identifier(fkey["name"]), sql.SQL(fkey["definition"])))
