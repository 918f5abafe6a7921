"""Reads from streaming replicas that are never older than what the caller has been told changed.

`LISTEN/NOTIFY` reaches only the primary, so the change feed listens there; a replica replays the
same commits a little later. A cache that forgets a tile on a change and rebuilds it at once from
a replica could store the old tile again. So every change the feed delivers raises a watermark —
the primary's WAL position when the notification arrived, which is at or past the change's commit
— and a read is served by the replica only once the replica has replayed up to it (waiting a
moment), else by the primary. A replica that does not answer is left alone for a few seconds and
reads go to the primary meanwhile: no manual step, no storm of errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger("cityops.replication")

BEHIND_SQL = "SELECT pg_is_in_recovery() AND coalesce(pg_last_wal_replay_lsn() < %s::pg_lsn, true) AS behind"
POLL_S = 0.02


def lsn_value(lsn: str) -> int:
    """A pg_lsn's text ('16/B374D848') as a comparable integer."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class ReadRouter:
    def __init__(self, primary: AsyncConnectionPool, replica: AsyncConnectionPool | None, *,
                 wait_s: float = 0.5, checkout_timeout_s: float = 1.0, rest_after_failure_s: float = 5.0):
        self.primary = primary
        self.replica = replica
        self.wait_s = wait_s
        self.checkout_timeout_s = checkout_timeout_s
        self.rest_after_failure_s = rest_after_failure_s
        self.watermark: str | None = None
        self.served: Counter[str] = Counter()  # 'replica', 'primary', 'lagging', 'replica_down'
        self._resting_until = 0.0

    async def note_change(self) -> None:
        """Raise the watermark to the primary's WAL position now; call on every change notification,
        before the cache forgets the tiles it touched."""
        if self.replica is None:
            return
        async with self.primary.connection() as conn:
            lsn = (await (await conn.execute("SELECT pg_current_wal_lsn()::text AS lsn")).fetchone())["lsn"]
        if self.watermark is None or lsn_value(lsn) > lsn_value(self.watermark):
            self.watermark = lsn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for reads that sees every change noted so far."""
        conn_cm = await self._replica_connection()
        if conn_cm is None:
            async with self.primary.connection() as conn:
                yield conn
            return
        async with conn_cm as conn:
            yield conn

    async def _replica_connection(self):
        if self.replica is None or time.monotonic() < self._resting_until:
            if self.replica is not None:
                self.served["replica_down"] += 1
            self.served["primary"] += 1
            return None
        watermark = self.watermark
        try:
            conn = await self.replica.getconn(timeout=self.checkout_timeout_s)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            self._rest(exc)
            return None
        try:
            if watermark is not None and not await self._caught_up(conn, watermark):
                await self.replica.putconn(conn)
                self.served["lagging"] += 1
                self.served["primary"] += 1
                return None
        except psycopg.OperationalError as exc:
            await self.replica.putconn(conn)
            self._rest(exc)
            return None
        self.served["replica"] += 1
        return self._returning(conn)

    @asynccontextmanager
    async def _returning(self, conn: psycopg.AsyncConnection) -> AsyncIterator[psycopg.AsyncConnection]:
        try:
            yield conn
        finally:
            await self.replica.putconn(conn)

    async def _caught_up(self, conn: psycopg.AsyncConnection, watermark: str) -> bool:
        deadline = time.monotonic() + self.wait_s
        while True:
            behind = (await (await conn.execute(BEHIND_SQL, [watermark])).fetchone())["behind"]
            if not behind:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    def _rest(self, exc: Exception) -> None:
        log.warning("read replica unavailable (%s); reading from the primary for %s s", exc, self.rest_after_failure_s)
        self._resting_until = time.monotonic() + self.rest_after_failure_s
        self.served["replica_down"] += 1
        self.served["primary"] += 1
