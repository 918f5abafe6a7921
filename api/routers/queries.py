"""The planners' spatial queries over HTTP (`/queries/…`): point location (one point or a batch
of up to 100,000 as JSON or CSV), within-distance, nearest, density per zone, coverage gaps."""

import csv
import io
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from api.deps import Connection
from api.extension import Extension
from gis import queries
from gis.errors import InvalidInput
from layers import planner

Lon = Annotated[float, Query(ge=-180, le=180, description="longitude (CRS84)")]
Lat = Annotated[float, Query(ge=-90, le=90, description="latitude (CRS84)")]
Filter = Annotated[str, Query(description="CQL2 filter on the layer (see its /queryables)")]
FilterLang = Annotated[Literal["cql2-text", "cql2-json"], Query(alias="filter-lang")]


class Points(BaseModel):
    points: list[tuple[float, float]] = Field(max_length=queries.MAX_POINTS, description="[[lon, lat], …] in CRS84")


class Around(BaseModel):
    geometry: dict = Field(description="GeoJSON geometry in CRS84: a point, a line or a polygon")
    distance_m: float = Field(0, ge=0, le=queries.MAX_DISTANCE_M)
    filter: str | None = None


def _csv(rows: list[dict]) -> Response:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")


def queries_extension() -> Extension:
    router = APIRouter(prefix="/queries", tags=["Planners' queries"])

    @router.get("/locate", summary="Unit grid, community, street, district and responsible unit holding a point")
    async def locate_one(lon: Lon, lat: Lat, conn: Connection):
        return (await queries.locate(conn, [lon], [lat]))[0]

    @router.post("/locate", summary="The same for up to 100,000 points (JSON, or CSV lon,lat with ?f=csv answers)",
                 openapi_extra={"requestBody": {"content": {
                     "application/json": {"schema": Points.model_json_schema()},
                     "text/csv": {"schema": {"type": "string", "description": "lines of lon,lat (a header is skipped)"}}}}})
    async def locate_many(request: Request, conn: Connection,
                          f: Annotated[Literal["json", "csv"], Query(description="answer format")] = "json"):
        if request.headers.get("content-type", "").startswith("text/csv"):
            lons, lats = queries.points_from_csv((await request.body()).decode())
        else:
            try:
                points = Points.model_validate_json(await request.body()).points
            except ValidationError as exc:
                first = exc.errors()[0]
                raise InvalidInput(f"body must be {{\"points\": [[lon, lat], …]}}; "
                                   f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from None
            lons, lats = [p[0] for p in points], [p[1] for p in points]
        rows = await queries.locate(conn, lons, lats)
        # orjson: FastAPI's generic encoder takes seconds over 100,000 rows
        return _csv(rows) if f == "csv" else Response(orjson.dumps({"count": len(rows), "results": rows}),
                                                      media_type="application/json")

    @router.get("/within/{layer}", summary="Features of a layer within a distance (m) of a point")
    async def within_point(layer: str, lon: Lon, lat: Lat, conn: Connection,
                           distance_m: Annotated[float, Query(ge=0, le=queries.MAX_DISTANCE_M)] = 100,
                           filter: Filter = None, filter_lang: FilterLang = None):
        rows = await planner.within(conn, layer, queries.query_geometry(lon=lon, lat=lat), distance_m,
                                    cql=filter, filter_lang=filter_lang)
        return {"layer": layer, "distance_m": distance_m, "count": len(rows), "features": rows}

    @router.post("/within/{layer}", summary="Features of a layer within a distance (m) of a line or inside a polygon")
    async def within_geometry(layer: str, body: Around, conn: Connection):
        rows = await planner.within(conn, layer, queries.query_geometry(body.geometry), body.distance_m, cql=body.filter)
        return {"layer": layer, "distance_m": body.distance_m, "count": len(rows), "features": rows}

    @router.get("/nearest/{layer}", summary="The n features of a layer nearest a point, with distances in metres")
    async def nearest(layer: str, lon: Lon, lat: Lat, conn: Connection, n: Annotated[int, Query(ge=1, le=1000)] = 5,
                      filter: Filter = None, filter_lang: FilterLang = None):
        rows = await planner.nearest(conn, layer, queries.query_geometry(lon=lon, lat=lat), n, cql=filter, filter_lang=filter_lang)
        return {"layer": layer, "features": rows}

    @router.get("/density/{layer}", summary="Count and density (per km²) of a layer's features per zone; "
                                            "GeoJSON choropleth with class breaks, or a CSV table")
    async def density(layer: str, conn: Connection, zone: Literal["grid", "community", "street", "district"] = "community",
                      district: Annotated[str, Query(pattern=r"^\d{6}$")] = None, filter: Filter = None,
                      filter_lang: FilterLang = None, f: Literal["geojson", "csv"] = "geojson"):
        result = await planner.density(conn, layer, zone, district=district, cql=filter, filter_lang=filter_lang)
        if f == "csv":
            return _csv([feature["properties"] for feature in result["features"]])
        return result

    @router.get("/coverage-gaps/{layer}", summary="Parts of the gridded urban area farther than a distance from every "
                                                  "feature of a layer, per unit grid")
    async def coverage_gaps(layer: str, conn: Connection,
                            distance_m: Annotated[float, Query(gt=0, le=queries.MAX_DISTANCE_M)],
                            district: Annotated[str, Query(pattern=r"^\d{6}$")] = None,
                            bbox: Annotated[str, Query(description="minlon,minlat,maxlon,maxlat")] = None,
                            filter: Filter = None, filter_lang: FilterLang = None,
                            f: Literal["geojson", "csv"] = "geojson"):
        try:
            box = [float(v) for v in bbox.split(",")] if bbox else None
        except ValueError:
            raise InvalidInput("bbox must be four comma-separated numbers") from None
        result = await planner.coverage_gaps(conn, layer, distance_m, district=district, bbox=box, cql=filter,
                                             filter_lang=filter_lang)
        if f == "csv":
            return _csv([feature["properties"] for feature in result["features"]])
        return result

    return Extension(router=router, links=(
        {"rel": "http://cityops.dev/rel/queries", "type": "application/json", "title": "Planners' spatial queries",
         "href": "/queries/locate?lon=118.28&lat=33.96"},))
