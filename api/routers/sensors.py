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


# Options that only shape an answer (add a count, select or expand fields): one left unimplemented still
# answers the client's question, so it is tolerated; frost-sta-client's `.count()` sends $count.
SHAPING_OPTIONS = frozenset({"$count", "$select", "$expand"})


async def only_implemented_options(request: Request) -> None:
    """A SensorThings query option that chooses or orders the answer ($filter, $orderby, $skip,
    $resultFormat, …) and that a route does not implement is refused: ignored, it would answer another
    question than the one asked (every reading, not those over a threshold) and the client could not tell."""
    route = request.scope.get("route")
    implemented = {param.alias for param in route.dependant.query_params if param.alias.startswith("$")} if route else set()
    refused = sorted(name for name in request.query_params
                     if name.startswith("$") and name not in implemented and name not in SHAPING_OPTIONS)
    if refused:
        raise InvalidInput(f"{', '.join(refused)}: not implemented on {request.url.path} "
                           f"(it takes {', '.join(sorted(implemented)) or 'no query options'})")


def sensors_extension() -> Extension:
    router = APIRouter(prefix=PREFIX, tags=["Sensors (SensorThings API)"], route_class=KeyFirstRoute,
                       dependencies=[Depends(only_implemented_options)])

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
