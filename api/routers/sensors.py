"""Sensor readings in over OGC SensorThings API 1.1 (Things = instrumented covers, Datastreams,
Observations, CreateObservations with dataArray), so SensorThings clients such as frost-sta-client
can send them. Writes need a key with the device role, as `Authorization: Bearer <key>` or as the
password of HTTP Basic (what SensorThings clients send)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request

from api.deps import Connection, require
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from gis.errors import InvalidInput, NotFound
from gis.keys import Principal
from ops import readings, sensor_things
from gis.settings import settings_of
from ops.settings import OpsSettings

PREFIX = "/sta/v1.1"


# The device key, checked on the request's own connection (and before the body, by api.key_gate).
Device = Annotated[Principal, Depends(require("device", basic=True))]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def sensors_extension() -> Extension:
    router = APIRouter(prefix=PREFIX, tags=["Sensors (SensorThings API)"], route_class=KeyFirstRoute)

    @router.get("", summary="SensorThings service root")
    async def root(request: Request):
        base = _base(request)
        return {"value": [{"name": name, "url": f"{base}/{name}"} for name in ("Things", "Datastreams", "ObservedProperties", "Observations")],
                "serverSettings": {"conformance": ["http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
                                                   "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array"]}}

    @router.get("/Things", summary="Instrumented manhole covers")
    async def things(request: Request, conn: Connection, top: Annotated[int, Query(alias="$top", ge=1, le=1000)] = 100,
                     skip: Annotated[int, Query(alias="$skip", ge=0)] = 0):
        return await sensor_things.things(conn, _base(request), top, skip)

    @router.get("/ObservedProperties", summary="What the covers measure")
    async def observed_properties(request: Request, conn: Connection):
        return await sensor_things.observed_properties(conn, _base(request))

    @router.get("/Datastreams", summary="One datastream per cover and property")
    async def datastreams(request: Request, conn: Connection, top: Annotated[int, Query(alias="$top", ge=1, le=1000)] = 100,
                          skip: Annotated[int, Query(alias="$skip", ge=0)] = 0,
                          thing: Annotated[str | None, Query(description="only this cover's (objcode)", pattern=r"^[0-9]{16}$")] = None):
        return await sensor_things.datastreams(conn, _base(request), top, skip, thing)

    @router.get("/Datastreams({stream_id})", summary="A datastream with its latest observation")
    async def datastream(stream_id: int, request: Request, conn: Connection):
        found = await sensor_things.datastreams(conn, _base(request), 1, 0, None, stream_id)
        if not found["value"]:
            raise NotFound(f"no datastream {stream_id}")
        return found["value"][0]

    @router.get("/Datastreams({stream_id})/Observations", summary="Observations of a datastream, newest first")
    async def stream_observations(stream_id: int, request: Request, conn: Connection,
                                  top: Annotated[int, Query(alias="$top", ge=1, le=1000)] = 100):
        return await sensor_things.observations(conn, _base(request), stream_id, top)

    @router.post("/CreateObservations", status_code=201, summary="Many observations at once (dataArray)",
                 description="Answers one entry per row: the new Observation's link or `error: <reason>`; good rows land even when others fail.")
    async def create_observations(request: Request, conn: Connection, body: Annotated[list, Body()], principal: Device):
        outcome = await readings.ingest(conn, principal, readings.parse_batches(body), settings_of(OpsSettings), _base(request))
        return outcome["results"]

    @router.post("/Observations", status_code=201, summary="One observation (with Datastream)")
    async def create_observation(request: Request, conn: Connection, body: Annotated[dict, Body()], principal: Device):
        outcome = await readings.ingest(conn, principal, readings.observation_rows(body), settings_of(OpsSettings), _base(request))
        return _single(outcome)

    @router.post("/Datastreams({stream_id})/Observations", status_code=201, summary="One observation of a datastream")
    async def create_stream_observation(stream_id: int, request: Request, conn: Connection, body: Annotated[dict, Body()],
                                        principal: Device):
        outcome = await readings.ingest(conn, principal, readings.observation_rows({**body, "Datastream": {"@iot.id": stream_id}}),
                                        settings_of(OpsSettings), _base(request))
        return _single(outcome)

    return Extension(router=router)


def _single(outcome: dict) -> dict:
    result = outcome["results"][0]
    if result.startswith("error: "):
        raise InvalidInput(result.removeprefix("error: "))
    return {"@iot.selfLink": result}
