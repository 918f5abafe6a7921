"""Server-Sent Events for the command wall: the live figures and which tables just changed,
pushed from PostgreSQL LISTEN/NOTIFY through the app's change feed (no polling); and the open
alarms as GeoJSON for the map."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from api.deps import Connection
from api.extension import Extension
from api.live_hub import LiveHub
from ops.live_alarms import open_alarms
from ops.live_cases import overdue_cases

PING_S = 15


def live_extension() -> Extension:
    router = APIRouter(tags=["Command wall"])

    @router.get("/live", summary="Live figures and change events (text/event-stream)",
                description="Events: `figures` (on connect and whenever an alarm, stall site or case changes) "
                            'and `change` (`{tables: [...]}` written since the last event; `["*"]`: anything may have changed).')
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

    @router.get("/live/overdue-cases", summary="Cases past their time limit (督办) as GeoJSON")
    async def live_overdue_cases(conn: Connection):
        return await overdue_cases(conn)

    return Extension(router=router)
