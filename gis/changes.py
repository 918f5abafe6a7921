"""The change feed: one LISTEN connection that hears every committed write to the city's tables.

The statement triggers of migration 0004 send `pg_notify('cityops_changes', {"table", "bbox"})`
after any INSERT/UPDATE/DELETE, whoever writes. `ChangeFeed` keeps one async connection
listening (reconnecting with back-off if the database goes away), parses each payload into a
`Change` and hands it to every subscriber — the tile cache, the layer catalogue, the wall's live
figures. Subscribers are async callbacks (`subscribe`) or queues (`queue`).

After a reconnect, notifications sent while the connection was down are lost, so subscribers get
`Change(table=None, bbox=None)`: "anything may have changed".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg

CHANNEL = "cityops_changes"
RETRY_DELAYS_S = (0.5, 1, 2, 5, 10)

log = logging.getLogger("cityops.changes")


@dataclass(frozen=True)
class Change:
    """A committed statement's effect: the table it wrote (None: unknown) and the extent of the
    old and new geometries in EPSG:4490 as (west, south, east, north) (None: anywhere)."""

    table: str | None
    bbox: tuple[float, float, float, float] | None

    @property
    def everything(self) -> bool:
        return self.table is None

    @classmethod
    def from_payload(cls, payload: str) -> Change:
        data = json.loads(payload)
        bbox = data.get("bbox")
        return cls(table=data.get("table"), bbox=tuple(float(v) for v in bbox) if bbox else None)


EVERYTHING = Change(table=None, bbox=None)
Subscriber = Callable[[Change], Awaitable[None]]


class ChangeFeed:
    def __init__(self, conninfo: str):
        self._conninfo = conninfo
        self._subscribers: list[Subscriber] = []
        self._task: asyncio.Task | None = None
        self._listening = asyncio.Event()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(change)` for every change from now on; returns the unsubscribe function.
        Callbacks run one after another on the feed's task: keep them short."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    @asynccontextmanager
    async def queue(self, maxsize: int = 1000) -> AsyncIterator[asyncio.Queue[Change]]:
        """A queue of changes for a consumer with its own pace (e.g. one SSE client). If it falls
        `maxsize` behind, older changes are replaced by one EVERYTHING."""
        changes: asyncio.Queue[Change] = asyncio.Queue(maxsize)

        async def put(change: Change) -> None:
            if changes.full():
                while not changes.empty():
                    changes.get_nowait()
                change = EVERYTHING
            changes.put_nowait(change)

        unsubscribe = self.subscribe(put)
        try:
            yield changes
        finally:
            unsubscribe()

    async def start(self, timeout: float = 10) -> None:
        """Start listening; returns once the LISTEN is in place (so no later commit is missed)."""
        self._task = asyncio.create_task(self._run(), name="cityops-change-feed")
        await asyncio.wait_for(self._listening.wait(), timeout)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        await self._publish(EVERYTHING)
                    failures = 0
                    self._listening.set()
                    async for notify in conn.notifies():
                        await self._publish(self._parse(notify.payload))
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                log.warning("change feed lost its connection (%s); reconnecting in %s s", exc, delay)
                await asyncio.sleep(delay)

    @staticmethod
    def _parse(payload: str) -> Change:
        try:
            return Change.from_payload(payload)
        except (ValueError, TypeError, AttributeError):
            log.warning("unreadable change notification %r; treating it as a change anywhere", payload[:200])
            return EVERYTHING

    async def _publish(self, change: Change) -> None:
        for callback in list(self._subscribers):
            try:
                await callback(change)
            except Exception:  # one faulty subscriber must not silence the feed for the others
                log.exception("change subscriber %r failed", callback)
