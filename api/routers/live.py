"""Server-Sent Events for the command wall: the live figures and which tables just changed,
pushed from PostgreSQL LISTEN/NOTIFY (no polling); and the open alarms as GeoJSON for the map."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from sse_starlette import EventSourceResponse

from api.deps import Connection
from api.extension import Extension
from api.live_hub import LiveHub
from gis import change_feed
from gis.live_alarms import open_alarms

PING_S = 15


@asynccontextmanager
async def live_lifespan(app: FastAPI):
    hub = app.state.live_hub = LiveHub(app.state.pool)
    listener = asyncio.create_task(change_feed.listen(app.state.pool.conninfo, hub.on_change))
    try:
        yield
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


def live_extension() -> Extension:
    router = APIRouter(tags=["Command wall"], lifespan=live_lifespan)

    @router.get("/live", summary="Live figures and change events (text/event-stream)",
                description="Events: `figures` (on connect and whenever an alarm, stall site or case changes) "
                            "and `change` (`{tables: [...]}` written since the last event).")
    async def live(request: Request):
        hub: LiveHub = request.app.state.live_hub
        queue = hub.subscribe()

        async def events():
            try:
                yield {"event": "figures", "data": json.dumps(await hub.figures())}
                while True:
                    yield await queue.get()
            finally:
                hub.unsubscribe(queue)

        return EventSourceResponse(events(), ping=PING_S)

    @router.get("/live/alarms", summary="Open manhole alarms as GeoJSON")
    async def live_alarms(conn: Connection):
        return await open_alarms(conn)

    return Extension(router=router)
