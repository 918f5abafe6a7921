"""The planners' spatial queries over HTTP (`/queries/…`): point location (one point or a batch
of up to 100,000 as JSON or CSV), within-distance, nearest, density per zone, coverage gaps."""

import csv
import io
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import AnalysisTurn, Connection, LiveCatalogue, ReadConnection, get_catalogue
from api.extension import Extension
from gis import queries
from gis.errors import InvalidInput
from layers import planner

Lon = Annotated[float, Query(ge=-180, le=180, description="longitude (CRS84)")]
Lat = Annotated[float, Query(ge=-90, le=90, description="latitude (CRS84)")]
Filter = Annotated[str, Query(description="CQL2 filter on the layer (see its /queryables)")]
FilterLang = Annotated[Literal["cql2-text", "cql2-json"], Query(alias="filter-lang")]


def query_layer(catalogue: Annotated[LiveCatalogue, Depends(get_catalogue)],
                layer: Annotated[str, Path(description="a layer of the catalogue")]) -> tuple:
    resolved = catalogue.get(layer)
    return resolved, catalogue.queryables(resolved.id)


QueryLayer = Annotated[tuple, Depends(query_layer)]


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
    async def locate_one(request: Request, lon: Lon, lat: Lat, conn: Connection):
        return {"lon": lon, "lat": lat, **(await queries.locate(conn, [lon], [lat], await request.app.state.grid_index.get(conn)))[0]}

    @router.post("/locate", summary="The same for up to 100,000 points (JSON, or CSV lon,lat with ?f=csv answers)",
                 openapi_extra={"requestBody": {"content": {
                     "application/json": {"schema": Points.model_json_schema()},
                     "text/csv": {"schema": {"type": "string", "description": "lines of lon,lat (a header is skipped)"}}}}},
                 responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
    async def locate_many(request: Request, conn: Connection,
                          f: Annotated[Literal["json", "csv"], Query(description="answer format")] = "json"):
        if request.headers.get("content-type", "").startswith("text/csv"):
            lons, lats = queries.points_from_csv((await request.body()).decode())
        else:
            lons, lats = queries.points_from_json(await request.body())
        rows = await queries.locate(conn, lons, lats, await request.app.state.grid_index.get(conn))
        # orjson: FastAPI's generic encoder takes seconds over 100,000 rows
        if f == "csv":
            return _csv(queries.with_coordinates(lons, lats, rows))
        return Response(orjson.dumps({"count": len(rows), "results": rows}), media_type="application/json")

    @router.get("/within/{layer}", summary="Features of a layer within a distance (m) of a point")
    async def within_point(target: QueryLayer, lon: Lon, lat: Lat, conn: ReadConnection,
                           distance_m: Annotated[float, Query(ge=0, le=queries.MAX_DISTANCE_M)] = 100,
                           filter: Filter = None, filter_lang: FilterLang = None):
        rows = await planner.within(conn, *target, queries.query_geometry(lon=lon, lat=lat), distance_m,
                                    cql=filter, filter_lang=filter_lang)
        return {"layer": target[0].id, "distance_m": distance_m, "count": len(rows), "features": rows}

    @router.post("/within/{layer}", summary="Features of a layer within a distance (m) of a line or inside a polygon")
    async def within_geometry(target: QueryLayer, body: Around, conn: ReadConnection):
        rows = await planner.within(conn, *target, queries.query_geometry(body.geometry), body.distance_m, cql=body.filter)
        return {"layer": target[0].id, "distance_m": body.distance_m, "count": len(rows), "features": rows}

    @router.get("/nearest/{layer}", summary="The n features of a layer nearest a point, with distances in metres")
    async def nearest(target: QueryLayer, lon: Lon, lat: Lat, conn: ReadConnection, n: Annotated[int, Query(ge=1, le=1000)] = 5,
                      filter: Filter = None, filter_lang: FilterLang = None):
        rows = await planner.nearest(conn, *target, queries.query_geometry(lon=lon, lat=lat), n, cql=filter, filter_lang=filter_lang)
        return {"layer": target[0].id, "features": rows}

    @router.get("/density/{layer}", summary="Count and density (per km²) of a layer's features per zone; "
                                            "GeoJSON choropleth with class breaks, or a CSV table", dependencies=[AnalysisTurn])
    async def density(target: QueryLayer, conn: ReadConnection, zone: Literal["grid", "community", "street", "district"] = "community",
                      district: Annotated[str, Query(pattern=r"^\d{6}$")] = None, filter: Filter = None,
                      filter_lang: FilterLang = None, f: Literal["geojson", "csv"] = "geojson"):
        result = await planner.density(conn, *target, zone, district=district, cql=filter, filter_lang=filter_lang)
        if f == "csv":
            return _csv([feature["properties"] for feature in result["features"]])
        return result

    @router.get("/coverage-gaps/{layer}", summary="Parts of the gridded urban area farther than a distance from every "
                                                  "feature of a layer, per unit grid", dependencies=[AnalysisTurn])
    async def coverage_gaps(target: QueryLayer, conn: ReadConnection,
                            distance_m: Annotated[float, Query(gt=0, le=queries.MAX_DISTANCE_M)],
                            district: Annotated[str, Query(pattern=r"^\d{6}$")] = None,
                            bbox: Annotated[str, Query(description="minlon,minlat,maxlon,maxlat")] = None,
                            filter: Filter = None, filter_lang: FilterLang = None,
                            f: Literal["geojson", "csv"] = "geojson"):
        try:
            box = [float(v) for v in bbox.split(",")] if bbox else None
        except ValueError:
            raise InvalidInput("bbox must be four comma-separated numbers") from None
        result = await planner.coverage_gaps(conn, *target, distance_m, district=district, bbox=box, cql=filter,
                                             filter_lang=filter_lang)
        if f == "csv":
            return _csv([feature["properties"] for feature in result["features"]])
        return result

    return Extension(router=router, links=(
        {"rel": "http://cityops.dev/rel/queries", "type": "application/json", "title": "Planners' spatial queries",
         "href": "/queries/locate?lon=118.28&lat=33.96"},))
