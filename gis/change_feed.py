"""Interim change feed: one LISTEN connection on the `cityops_changes` channel.

Rows written by any program reach the wall because triggers in the database send
`pg_notify('cityops_changes', {"table", "bbox"})`. The tiles branch is building the shared feed
(gis/changes.py, one listener in the app's lifespan); when it lands, the wall subscribes to that
and this module goes away, so it stays this small on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import psycopg

CHANNEL = "cityops_changes"
RECONNECT_DELAY_S = 1.0

log = logging.getLogger("cityops.changes")


async def listen(conninfo: str, on_change: Callable[[dict], None]) -> None:
    """Calls `on_change(payload)` for each notification until cancelled; reconnects if the database goes away."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                async for notice in conn.notifies():
                    on_change(json.loads(notice.payload))
        except psycopg.OperationalError as exc:
            log.warning("change feed lost its connection (%s); reconnecting", exc)
            await asyncio.sleep(RECONNECT_DELAY_S)
