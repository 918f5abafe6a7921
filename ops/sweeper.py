"""The operations sweep, run by every API process: the coming months' partitions made, silent sensors
marked offline, late cases warned at 80 % of their time limit and escalated (督办) at 100 %. Each step is idempotent (a case is warned
once), so several processes sweeping at once do no harm."""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from ops import alarms, cases, partitions

log = logging.getLogger("cityops.ops")


async def sweep_forever(pool: AsyncConnectionPool, interval_s: float) -> None:
    while True:
        try:
            async with pool.connection() as conn:
                await partitions.ensure_ahead(conn)
                await alarms.mark_offline(conn)
                await cases.sweep_deadlines(conn)
        except asyncio.CancelledError:
            raise
        except Exception:  # the sweep runs again on the next tick
            log.exception("the operations sweep failed")
        await asyncio.sleep(interval_s)
