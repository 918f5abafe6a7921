"""Fans database changes out to the wall's Server-Sent Events subscribers.

A burst of changes (a bulk UPDATE, several alarms in one second) is coalesced: the figures are
recomputed once per burst, by one query for all subscribers, not once per change and client. A
client that connects gets the figures as last computed; until a change makes them stale, 200
clients connecting at once share one query (they used to run one each and wait 14 s).
"""

from __future__ import annotations

import asyncio
import json
import logging

from psycopg_pool import AsyncConnectionPool

from gis.changes import Change
from ops.figures import read_figures

# Tables whose writes change a figure; changes to other tables are only forwarded to the map.
FIGURE_TABLES = frozenset({"city.alarm", "city.stall_site", "city.case_file", "city.manhole_sensor"})
# What a change of unknown table (the feed reconnected) is reported as: the wall reloads everything.
ANY_TABLE = "*"
COALESCE_S = 0.1
QUEUE_LIMIT = 100

log = logging.getLogger("cityops.live")


class LiveHub:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool
        self.subscribers: set[asyncio.Queue] = set()
        self.pending_tables: set[str] = set()
        self.flush_task: asyncio.Task | None = None
        self.latest: dict | None = None
        self.computing: asyncio.Task | None = None
        self.generation = 0  # bumped when a change makes the figures stale

    async def figures(self) -> dict:
        """The current figures, computed at most once per change however many clients ask."""
        if self.latest is not None:
            return self.latest
        if self.computing is None:
            self.computing = asyncio.get_running_loop().create_task(self._compute(self.generation))
        return await asyncio.shield(self.computing)

    async def _compute(self, generation: int) -> dict:
        try:
            async with self.pool.connection() as conn:
                figures = await read_figures(conn)
            if generation == self.generation:  # no change since it started: keep it for the next client
                self.latest = figures
            return figures
        finally:
            if generation == self.generation:
                self.computing = None

    def _stale(self) -> None:
        self.generation += 1
        self.latest, self.computing = None, None

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    async def on_change(self, change: Change) -> None:
        if change.everything or change.table in FIGURE_TABLES:
            self._stale()
        if not self.subscribers:
            return
        self.pending_tables.add(ANY_TABLE if change.everything else change.table)
        if self.flush_task is None or self.flush_task.done():
            self.flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(COALESCE_S)
        tables, self.pending_tables = self.pending_tables, set()
        self._broadcast({"event": "change", "data": json.dumps({"tables": sorted(tables)})})
        if tables & (FIGURE_TABLES | {ANY_TABLE}):
            try:
                figures = await self.figures()
            except Exception:  # a failed refresh must not end the feed; the next change retries
                log.exception("could not recompute the wall's figures")
                return
            self._broadcast({"event": "figures", "data": json.dumps(figures)})

    def _broadcast(self, message: dict) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a stalled client loses old events, not the server's memory
                queue.get_nowait()
                queue.put_nowait(message)
