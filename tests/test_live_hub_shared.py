"""200 clients opening /live share one figures query per change (issue 13: each ran its own and
the median client waited 14 s for its first event)."""

from __future__ import annotations

import asyncio

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

import api.live_hub
from api.live_hub import LiveHub
from gis.changes import Change


def test_clients_share_one_figures_query_per_change(city_db, monkeypatch):
    queries = []
    real = api.live_hub.read_figures

    async def counted(conn):
        queries.append(1)
        return await real(conn)

    monkeypatch.setattr(api.live_hub, "read_figures", counted)

    async def scenario():
        async with AsyncConnectionPool(city_db, min_size=1, max_size=4, kwargs={"row_factory": dict_row, "autocommit": True}) as pool:
            hub = LiveHub(pool)
            first = await asyncio.gather(*(hub.figures() for _ in range(200)))
            assert len(queries) == 1 and all(f == first[0] for f in first)
            await hub.figures()
            assert len(queries) == 1  # nothing changed: served as computed
            await hub.on_change(Change("city.road", None))
            await hub.figures()
            assert len(queries) == 1  # roads are not in any figure
            await hub.on_change(Change("city.alarm", None))
            again = await asyncio.gather(*(hub.figures() for _ in range(200)))
            assert len(queries) == 2 and again[0]["as_of"] > first[0]["as_of"] and all(f == again[0] for f in again)

    asyncio.run(scenario())
