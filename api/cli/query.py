"""`cityops query …`: the planners' spatial queries from the command line, printed as JSON or CSV."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import typer
from psycopg.rows import dict_row

from api.cli.common import run_guarded
from gis import queries
from gis.db import conninfo
from gis.settings import get_settings
from layers import planner
from layers.live import LiveCatalogue

app = typer.Typer(help="Spatial queries for planners: locate, within, nearest, density, gaps.", no_args_is_help=True)
FilterOption = typer.Option(None, "--filter", help="CQL2 text filter on the layer")


def _run(query: Callable[[psycopg.AsyncConnection], Awaitable[object]], as_csv: bool = False) -> None:
    async def main() -> object:
        async with await psycopg.AsyncConnection.connect(conninfo(get_settings()), row_factory=dict_row, autocommit=True) as conn:
            return await query(conn)

    def action() -> None:
        result = asyncio.run(main())
        rows = result if isinstance(result, list) else [f["properties"] for f in result.get("features", [])]
        if as_csv and rows:
            writer = csv.DictWriter(sys.stdout, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        else:
            print(json.dumps(result, ensure_ascii=False, indent=1, default=str))
    run_guarded(action)


def _run_on(layer_id: str, query: Callable[..., Awaitable[object]], as_csv: bool = False) -> None:
    """Run `query(conn, layer, queryables)` on the layer the live catalogue (published layers too) names."""
    async def resolved(conn: psycopg.AsyncConnection) -> object:
        catalogue = LiveCatalogue()
        await catalogue.reload(conn)
        layer = catalogue.get(layer_id)
        return await query(conn, layer, catalogue.queryables(layer.id))

    _run(resolved, as_csv)


@app.command()
def locate(lon: float = typer.Argument(None), lat: float = typer.Argument(None),
           points: Path = typer.Option(None, "--csv", exists=True, help="CSV of lon,lat (up to 100,000 lines)"),
           as_csv: bool = typer.Option(False, "--out-csv", help="print CSV instead of JSON")) -> None:
    """Unit grid, community, street, district and responsible unit holding each point."""
    lons, lats = queries.points_from_csv(points.read_text()) if points else ([lon], [lat])
    async def locate_with_points(conn):
        return queries.with_coordinates(lons, lats, await queries.locate(conn, lons, lats))

    _run(locate_with_points, as_csv)


@app.command()
def within(layer: str, lon: float, lat: float, distance_m: float = typer.Option(100, "--distance"),
           cql: str = FilterOption) -> None:
    """Features of LAYER within --distance metres of a point."""
    _run_on(layer, lambda conn, *target: planner.within(conn, *target, queries.query_geometry(lon=lon, lat=lat), distance_m, cql=cql))


@app.command()
def nearest(layer: str, lon: float, lat: float, n: int = typer.Option(5, "-n"), cql: str = FilterOption) -> None:
    """The N features of LAYER nearest a point, with distances in metres."""
    _run_on(layer, lambda conn, *target: planner.nearest(conn, *target, queries.query_geometry(lon=lon, lat=lat), n, cql=cql))


@app.command()
def density(layer: str, zone: str = typer.Option("community", help="grid | community | street | district"),
            district: str = typer.Option(None), cql: str = FilterOption,
            as_csv: bool = typer.Option(True, "--csv/--geojson")) -> None:
    """Count and density (per km²) of LAYER's features per zone."""
    _run_on(layer, lambda conn, *target: planner.density(conn, *target, zone, district=district, cql=cql), as_csv)


@app.command()
def gaps(layer: str, distance_m: float = typer.Option(..., "--distance"), district: str = typer.Option(None),
         cql: str = FilterOption, as_csv: bool = typer.Option(True, "--csv/--geojson")) -> None:
    """Parts of each unit grid farther than --distance metres from every feature of LAYER."""
    _run_on(layer, lambda conn, *target: planner.coverage_gaps(conn, *target, distance_m, district=district, cql=cql), as_csv)
