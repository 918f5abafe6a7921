"""The planners' queries on catalogue layers: binds a layer resolved in the live catalogue, with its
queryables (and an optional CQL2 filter), to the SQL in `gis.queries` and shapes the answers. The
API and the `cityops query` command share it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import psycopg

from gis import queries
from gis.errors import InvalidInput
from gis.cql import Queryable
from layers.catalogue import Layer
from layers.features import Selection, relation, select

MAX_WITHIN = 10_000


Queryables = Mapping[str, Queryable]


def _selection(layer: Layer, queryables: Queryables, cql: str | None, filter_lang: str | None) -> Selection:
    return select(layer, queryables, cql=cql, filter_lang=filter_lang)


async def within(conn: psycopg.AsyncConnection, layer: Layer, queryables: Queryables, wkb: bytes, metres: float, *, cql: str | None = None,
                 filter_lang: str | None = None, limit: int = MAX_WITHIN) -> list[dict]:
    """Features within `metres` of the geometry (0: touching or inside it), nearest first."""
    chosen = _selection(layer, queryables, cql, filter_lang)
    if not 1 <= limit <= MAX_WITHIN:
        raise InvalidInput(f"limit must be between 1 and {MAX_WITHIN:,}")
    statement = queries.within_query(relation(chosen.layer), chosen.layer.key, chosen.where)
    params = {**chosen.params, "wkb": wkb, "metres": queries.check_distance(metres),
              "margin": queries.degrees_for(metres), "limit": limit}
    return await (await conn.execute(statement, params)).fetchall()


async def nearest(conn: psycopg.AsyncConnection, layer: Layer, queryables: Queryables, wkb: bytes, n: int, *, cql: str | None = None,
                  filter_lang: str | None = None) -> list[dict]:
    if not 1 <= n <= 1000:
        raise InvalidInput("n must be between 1 and 1,000")
    chosen = _selection(layer, queryables, cql, filter_lang)
    statement = queries.nearest_query(relation(chosen.layer), chosen.layer.key, chosen.where)
    params = {**chosen.params, "wkb": wkb, "n": n, "candidates": 2 * n + 16}
    return await (await conn.execute(statement, params)).fetchall()


async def density(conn: psycopg.AsyncConnection, layer: Layer, queryables: Queryables, zone: str, *, district: str | None = None,
                  cql: str | None = None, filter_lang: str | None = None) -> dict:
    """Counts and densities per zone as a GeoJSON FeatureCollection with suggested class breaks."""
    if zone not in queries.ZONES:
        raise InvalidInput(f"zone {zone!r} is not one of {', '.join(queries.ZONES)}")
    chosen = _selection(layer, queryables, cql, filter_lang)
    statement = queries.density_query(zone, relation(chosen.layer), chosen.where, district=district is not None)
    rows = await (await conn.execute(statement, {**chosen.params, "district": district})).fetchall()
    features = [{"type": "Feature", "id": row["code"], "geometry": json.loads(row["geometry"]),
                 "properties": {k: row[k] for k in ("code", "name", "area_m2", "count", "per_km2")}} for row in rows]
    return {"type": "FeatureCollection", "layer": layer.id, "zone": zone, "features": features,
            "class_breaks": {"per_km2": queries.class_breaks([row["per_km2"] for row in rows]),
                             "count": queries.class_breaks([row["count"] for row in rows])}}


async def coverage_gaps(conn: psycopg.AsyncConnection, layer: Layer, queryables: Queryables, metres: float, *, district: str | None = None,
                        bbox: Sequence[float] | None = None, cql: str | None = None,
                        filter_lang: str | None = None) -> dict:
    """Per unit grid, the area farther than `metres` from every feature of the layer."""
    chosen = _selection(layer, queryables, cql, filter_lang)
    statement = queries.gaps_query(relation(chosen.layer), chosen.where, district=district is not None)
    rows = await (await conn.execute(statement, {**chosen.params, **queries.gap_params(metres, district, bbox)})).fetchall()
    total = sum(row["area_m2"] for row in rows)
    uncovered = sum(row["uncovered_m2"] for row in rows)
    features = [{"type": "Feature", "id": row["bgcode"],
                 "geometry": json.loads(row["geometry"]) if row["geometry"] else None,
                 "properties": {k: row[k] for k in ("bgcode", "area_m2", "uncovered_m2", "uncovered_pct")}} for row in rows]
    return {"type": "FeatureCollection", "layer": layer.id, "distance_m": metres, "grids": len(rows),
            "area_m2": total, "uncovered_m2": uncovered, "uncovered_pct": 100 * uncovered / total if total else 0.0,
            "features": features}
