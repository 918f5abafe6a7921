"""Reads from streaming replicas that are never older than what the caller has been told changed.

`LISTEN/NOTIFY` reaches only the primary, so the change feed listens there; a replica replays the
same commits a little later. A cache that forgets a tile on a change and rebuilds it at once from
a replica could store the old tile again. So every change the feed delivers raises a watermark —
the primary's WAL position when the notification arrived, which is at or past the change's commit
— and a read is served by the replica only once the replica has replayed up to it (waiting a
moment), else by the primary. A replica that does not answer is left alone for a few seconds and
reads go to the primary meanwhile: no manual step, no storm of errors.

A burst of notifications costs one WAL-position query per round, not one each: a query covers every
change noted before it started, so the changes noted while one runs share the next. The feed never
waits on the primary; a read waits for the round that covers the changes noted before it (or reads
the primary if the position cannot be read).
The primary's side is `PrimaryGate`: while the primary is down, a request that needs it is answered
at once (503 with the reason) instead of waiting out the pool, and the first request after it is
back gets it again, with no restart.
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

from gis.errors import PrimaryUnavailable

log = logging.getLogger("cityops.replication")

BEHIND_SQL = "SELECT pg_is_in_recovery() AND coalesce(pg_last_wal_replay_lsn() < %s::pg_lsn, true) AS behind"
POLL_S = 0.02


def lsn_value(lsn: str) -> int:
    """A pg_lsn's text ('16/B374D848') as a comparable integer."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class PrimaryGate:
    """The primary's pool, with a fast refusal while the primary is down. A connection-class
    failure (refused, reset, shut down; reported by `suspect`) or a pool timeout makes the next
    request probe the primary with one short connection, at most once per `probe_every_s`; while the
    probe fails, every request needing the primary is refused at once with the probe's reason. The
    first successful probe drops the pool's dead connections (the server restarted) and lets
    requests through again."""

    def __init__(self, pool: AsyncConnectionPool, *, probe_every_s: float = 1.0, probe_timeout_s: float = 2.0):
        self.pool = pool
        self.probe_every_s = probe_every_s
        self.probe_timeout_s = probe_timeout_s
        self.down_reason: str | None = None
        self._suspected = False
        self._probed_at = 0.0
        self._probing = asyncio.Lock()

    def suspect(self) -> None:
        self._suspected = True

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        await self._refuse_while_down()
        try:
            conn = await self.pool.getconn()
        except PoolTimeout:
            self.suspect()
            await self._refuse_while_down()  # a down primary is named as such; a busy pool stays busy
            raise
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    async def _refuse_while_down(self) -> None:
        if not (self._suspected or self.down_reason):
            return
        async with self._probing:
            if time.monotonic() - self._probed_at >= self.probe_every_s:
                await self._probe()
        if self.down_reason:
            raise PrimaryUnavailable(f"the primary database does not answer ({self.down_reason}): writes are refused "
                                     "until it is back; reads go on from a replica where one is configured")

    async def _probe(self) -> None:
        self._suspected, self._probed_at = False, time.monotonic()
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                async with await psycopg.AsyncConnection.connect(self.pool.conninfo, autocommit=True,
                                                                 connect_timeout=max(1, int(self.probe_timeout_s))) as probe:
                    await probe.execute("SELECT 1")
        except (psycopg.OperationalError, TimeoutError) as exc:
            state = getattr(exc, "sqlstate", None)
            if not state or state.startswith(("08", "57P")):
                self._mark_down(exc)
                return
            # it answered, if only to say it is full (53300): busy, not down
        if self.down_reason is not None:
            log.warning("the primary database is back")
            self.down_reason = None
        await self.pool.check()

    def _mark_down(self, exc: Exception) -> None:
        # the last clause of libpq's first line ("… failed: Connection refused"), without socket paths or hosts
        reason = ((str(exc).strip().splitlines() or [""])[0].rsplit("failed: ", 1)[-1]
                  or "no answer within the probe's time")
        if self.down_reason is None:
            log.error("the primary database is down: %s", reason)
        self.down_reason = reason


class ReadRouter:
    def __init__(self, primary: AsyncConnectionPool | PrimaryGate, replica: AsyncConnectionPool | None, *,
                 wait_s: float = 0.5, checkout_timeout_s: float = 1.0, rest_after_failure_s: float = 5.0):
        self.primary = primary
        self.replica = replica
        self.wait_s = wait_s
        self.checkout_timeout_s = checkout_timeout_s
        self.rest_after_failure_s = rest_after_failure_s
        self.watermark: str | None = None
        # 'replica', 'primary', 'lagging', 'replica_down'; 'watermark_reads': WAL-position queries on the primary
        self.served: Counter[str] = Counter()
        self._resting_until = 0.0
        self._noted = 0  # changes noted so far
        self._covered = 0  # of those, how many the watermark covers
        self._raising: asyncio.Task | None = None  # the rounds of WAL-position queries while changes are uncovered
        self._round = asyncio.Event()  # set when the round in flight ends

    async def note_change(self) -> None:
        """Note a change: the watermark will rise to the primary's WAL position past it. Call on every
        change notification, before the cache forgets the tiles it touched; it does not wait for the
        primary (reads do, see `_noted_changes_covered`)."""
        if self.replica is None:
            return
        self._noted += 1
        if self._raising is None or self._raising.done():
            self._raising = asyncio.get_running_loop().create_task(self._raise_watermark())

    async def _raise_watermark(self) -> None:
        """Query rounds until the watermark covers every noted change; each round covers those noted
        before it started (they committed before the notification came, so before the query)."""
        while self._covered < self._noted:
            noted, this_round = self._noted, self._round
            try:
                async with self.primary.connection() as conn:
                    lsn = (await (await conn.execute("SELECT pg_current_wal_lsn()::text AS lsn")).fetchone())["lsn"]
            except (PoolTimeout, psycopg.Error) as exc:
                log.warning("cannot read the primary's WAL position (%s); reads go to the primary", exc)
                return
            else:
                self.served["watermark_reads"] += 1
                if self.watermark is None or lsn_value(lsn) > lsn_value(self.watermark):
                    self.watermark = lsn
                self._covered = noted
            finally:
                self._round = asyncio.Event()
                this_round.set()

    async def _noted_changes_covered(self) -> bool:
        """Wait until the watermark covers the changes noted before this call; False if the primary's
        position could not be read (after one retry)."""
        target, retried = self._noted, False
        while self._covered < target:
            if self._raising is None or self._raising.done():
                if retried:
                    return False
                retried = True
                self._raising = asyncio.get_running_loop().create_task(self._raise_watermark())
            await self._round.wait()
        return True

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
        if not await self._noted_changes_covered():
            self.served["lagging"] += 1
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
