"""Cases (案卷) by role: list, read with history, open, and take workflow steps; the evaluation
(综合评价) figures. The deadline sweep runs with the app's services (ops.sweeper)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from api.deps import AnalysisTurn, Connection, require
from api.extension import Extension
from api.key_gate import KeyFirstRoute
from gis.keys import Principal
from ops import cases, evaluation


class NewCase(BaseModel):
    lon: float = Field(ge=-180, le=180, description="CGCS2000 longitude")
    lat: float = Field(ge=-90, le=90, description="CGCS2000 latitude")
    source: Literal["supervisor", "video", "public", "superior", "sensor"] = "supervisor"
    event_class_code: str | None = Field(None, pattern=r"^[0-9]{4}$")
    component_class_code: str | None = Field(None, pattern=r"^[0-9]{4}$")
    objcode: str | None = Field(None, pattern=r"^[0-9]{16}$")
    description: str | None = Field(None, max_length=4000)
    address: str | None = Field(None, max_length=400)


class StepBody(BaseModel):
    note: str | None = Field(None, max_length=4000, description="what was done or seen")
    reason: str | None = Field(None, max_length=2000, description="why (required for return, void, extend, defer)")
    unit: str | None = Field(None, max_length=64, description="dispatch: code of the responsible unit (default: the one the grid routes to)")
    hours: float | None = Field(None, description="extend: working hours added to the limit")
    passed: bool | None = Field(None, description="check: true closes the way to 结案, false sends it back for rework")
    evaluation: int | None = Field(None, description="evaluate: 1 (poor) … 5 (excellent)")
    photos: list[str] = Field(default_factory=list, max_length=20, description="handle: links to photos of the result")


Reader = Annotated[Principal, Depends(require("viewer"))]


def cases_extension() -> Extension:
    router = APIRouter(tags=["Cases"], route_class=KeyFirstRoute)

    @router.get("/cases", summary="Cases the key may see, newest first")
    async def list_cases(conn: Connection, principal: Reader,
                         state: Annotated[str | None, Query(max_length=20)] = None,
                         event_class: Annotated[str | None, Query(pattern=r"^[0-9]{4}$")] = None,
                         overdue: bool | None = None,
                         unrouted: Annotated[bool, Query(description="only the manual dispatch queue")] = False,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0):
        return {"cases": await cases.list_cases(conn, principal, state=state, event_class_code=event_class,
                                                overdue=overdue, unrouted=unrouted, limit=limit, offset=offset)}

    @router.get("/cases/{case_id}", summary="A case and its whole history (one case_event per step)")
    async def get_case(case_id: Annotated[int, Path(ge=1)], conn: Connection, principal: Reader):
        return await cases.get_case(conn, principal, case_id)

    @router.post("/cases", status_code=201, summary="Report a case at a point (信息采集); routed by its grid")
    async def post_case(body: NewCase, conn: Connection, principal: Annotated[Principal, Depends(require("dispatcher"))]):
        async with conn.transaction():
            where = await cases.route(conn, body.lon, body.lat)
            principal.require_district(where["district_code"])
            opened = await cases.open_case(conn, actor=principal.name, **body.model_dump())
        return await cases.get_case(conn, principal, opened["id"])

    @router.post("/cases/{case_id}/{action}", summary="Take a workflow step: " + ", ".join(cases.ACTIONS))
    async def post_step(case_id: Annotated[int, Path(ge=1)], action: Annotated[str, Path(max_length=20)],
                        body: StepBody, conn: Connection, principal: Annotated[Principal, Depends(require("viewer"))]):
        return await cases.transition(conn, principal, case_id, action, note=body.note, reason=body.reason,
                                      unit_code=body.unit, hours=body.hours, passed=body.passed,
                                      evaluation=body.evaluation, photos=body.photos)

    @router.get("/evaluation", tags=["Evaluation"], summary="综合评价 per district, street, community or unit grid",
                description="GeoJSON with a class 1 (best) … 5 (worst) by quintile of cases per km² for a choropleth, or `f=csv` for the table.",
                responses={200: {"content": {"application/json": {}, "text/csv": {}}}}, dependencies=[AnalysisTurn])
    async def evaluation_figures(conn: Connection, level: Annotated[str, Query(max_length=12)] = "street",
                                 days: Annotated[int, Query(ge=1, le=366)] = 30,
                                 f: Annotated[Literal["json", "csv"], Query()] = "json"):
        rows = await evaluation.evaluate(conn, level, days, with_geometry=f == "json")
        if f == "csv":
            return Response(evaluation.as_csv(rows), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="evaluation-{level}-{days}d.csv"'})
        return evaluation.as_features(rows, level, days)

    return Extension(router=router)
