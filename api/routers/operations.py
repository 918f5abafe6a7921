"""Live operations: stall-site occupancy and manhole sensor alarms (writes need a key)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import Connection, require
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from ops import operations
from gis.keys import Principal


class Occupancy(BaseModel):
    occupied: int = Field(ge=0, description="stalls in use now")


class StallSite(BaseModel):
    code: str
    name: str
    capacity: int
    occupied: int
    district_code: str
    updated_at: datetime


class NewAlarm(BaseModel):
    objcode: str = Field(pattern=r"^[0-9]{16}$", description="GB/T 30428.2 code of the manhole cover")
    alarm_type: Literal["displacement", "opened", "overflow", "methane"]
    severity: int = Field(default=2, ge=1, le=3)
    reading: float | None = None


class Alarm(BaseModel):
    id: int
    objcode: str
    alarm_type: str
    severity: int
    status: str
    raised_at: datetime


def operations_extension() -> Extension:
    router = APIRouter(tags=["Operations"], route_class=KeyFirstRoute)

    @router.put("/stall-sites/{code}/occupancy", response_model=StallSite, summary="Report a stall site's occupancy")
    async def put_occupancy(code: str, body: Occupancy, conn: Connection,
                            principal: Annotated[Principal, Depends(require("editor"))]):
        return await operations.set_stall_occupancy(conn, principal, code, body.occupied)

    @router.post("/alarms", response_model=Alarm, status_code=201, summary="Raise a manhole sensor alarm")
    async def post_alarm(body: NewAlarm, conn: Connection,
                         principal: Annotated[Principal, Depends(require("editor"))]):
        return await operations.raise_alarm(conn, principal, body.objcode, body.alarm_type, body.severity, body.reading)

    return Extension(router=router)
