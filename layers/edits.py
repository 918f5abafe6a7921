"""OGC API Features Part 4 writes on editable layers: create, replace, update (merge patch), delete.

Each write is one transaction that locks the row, checks the caller's ETag (If-Match) and
district (the old row's and the new one's), validates like an import (valid geometry of the
layer's type, GB/T codes), and lets the database constraints have the last word. Writes go
through the tables, so the tile-invalidation triggers see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
import shapely
from psycopg import sql
from shapely.geometry import shape

from gis import codes
from gis.cql import Queryable
from gis.crs import STORAGE_SRID, parse_crs
from gis.errors import Forbidden, InvalidInput, NotFound, PreconditionFailed, PreconditionRequired
from gis.keys import Principal
from layers.catalogue import Layer
from layers.features import feature_id, relation

GENERATED_SQL = (
    "SELECT attname AS name FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
    "AND NOT attisdropped AND (attgenerated <> '' OR attidentity <> '' "
    "OR pg_get_expr((SELECT adbin FROM pg_attrdef WHERE adrelid = attrelid AND adnum = attnum), attrelid) LIKE 'nextval(%%')"
)
ACCEPTED_TYPES = {
    "Point": {"Point"}, "LineString": {"LineString"}, "Polygon": {"Polygon"},
    "MultiPolygon": {"Polygon", "MultiPolygon"}, "Geometry": {"Point", "LineString", "Polygon"},
}
CODE_CHECKS = {"bgcode": codes.normalise_grid_code, "objcode": codes.check_component_code}

_generated: dict[str, frozenset[str]] = {}


async def _server_set_columns(conn: psycopg.AsyncConnection, layer: Layer) -> frozenset[str]:
    """Columns the database fills itself (generated, serial): a body may carry them but cannot set them."""
    if layer.relation not in _generated:
        rows = await (await conn.execute(GENERATED_SQL, [layer.relation])).fetchall()
        _generated[layer.relation] = frozenset(row["name"] for row in rows)
    return _generated[layer.relation]


# -- the body -------------------------------------------------------------------------------

def _geometry(layer: Layer, value: Any, content_crs: str | None, params: dict[str, Any]) -> sql.Composable:
    """A valid geometry of the layer's type as SQL (WKB bound in params, transformed to CGCS2000)."""
    if not isinstance(value, dict):
        raise InvalidInput("the feature needs a GeoJSON geometry")
    try:
        geometry = shape(value)
    except Exception as exc:  # shapely reports malformed GeoJSON with several exception types
        raise InvalidInput(f"the geometry is not valid GeoJSON: {exc}") from None
    if geometry.geom_type not in ACCEPTED_TYPES[layer.geometry_type]:
        raise InvalidInput(f"collection {layer.id!r} holds {layer.geometry_type} geometries, not {geometry.geom_type}")
    if geometry.is_empty or not geometry.is_valid:
        raise InvalidInput(f"the geometry is invalid: {shapely.is_valid_reason(geometry) if not geometry.is_empty else 'empty'}")
    crs = parse_crs(content_crs, parameter="Content-Crs")
    if crs.lat_first:
        geometry = shapely.transform(geometry, lambda coords: coords[:, ::-1])
    if crs.geographic and not shapely.box(-180, -90, 180, 90).covers(geometry):
        order = "latitude, longitude" if crs.lat_first else "longitude, latitude"
        raise InvalidInput(f"the geometry lies outside -180…180, -90…90; {crs.uri} takes {order}")
    params.update(geom_wkb=shapely.to_wkb(geometry), geom_srid=crs.srid)
    expression = sql.SQL("ST_Transform(ST_SetSRID(ST_GeomFromWKB(%(geom_wkb)s), %(geom_srid)s), {})").format(
        sql.Literal(STORAGE_SRID))
    return sql.SQL("ST_Multi({})").format(expression) if layer.geometry_type.startswith("Multi") else expression


def _properties(layer: Layer, body: Mapping[str, Any], server_set: frozenset[str]) -> dict[str, Any]:
    """The writable properties a body sets, codes checked; properties the server sets are ignored."""
    given = body.get("properties") or {}
    if not isinstance(given, dict):
        raise InvalidInput("the feature's properties must be a JSON object")
    unknown = [name for name in given if name not in layer.properties and name != layer.key]
    if unknown:
        raise InvalidInput(f"unknown properties {', '.join(unknown)}; collection {layer.id!r} has {', '.join(layer.properties)}")
    values = {name: value for name, value in given.items() if name not in server_set}
    for name, check in CODE_CHECKS.items():
        if isinstance(values.get(name), str):
            values[name] = check(values[name])
    return values


def _feature(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict) or body.get("type") != "Feature":
        raise InvalidInput('the body must be a GeoJSON Feature ({"type": "Feature", "geometry": …, "properties": …})')
    return body


def _etag(if_match: str | None) -> str:
    if not if_match:
        raise PreconditionRequired("send If-Match with the ETag of the feature as last read, so no one's change is lost")
    return if_match.strip().removeprefix("W/").strip('"')


# -- the writes -----------------------------------------------------------------------------

def _returning(layer: Layer) -> sql.Composable:
    district = sql.Identifier(layer.district_column) if layer.district_column else sql.SQL("NULL")
    return sql.SQL(" RETURNING {}::text AS fid, {} AS district, md5(t::text) AS etag").format(
        sql.Identifier(layer.key), district)


def _check_district(principal: Principal, layer: Layer, row: Mapping[str, Any]) -> None:
    if principal.districts and layer.district_column is None:
        raise Forbidden(f"collection {layer.id!r} has no district, so only keys for all districts may change it")
    principal.require_district(row["district"])


async def _locked(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer,
                  queryables: Mapping[str, Queryable], fid: str, if_match: str | None) -> Any:
    """Lock the feature, check the caller saw its current state and may change its district; its key."""
    expected = _etag(if_match)
    key = feature_id(layer, queryables, fid)
    district = sql.Identifier(layer.district_column) if layer.district_column else sql.SQL("NULL")
    row = await (await conn.execute(sql.SQL(
        "SELECT {} AS district, md5(t::text) AS etag FROM {} t WHERE {} = %s FOR UPDATE").format(
        district, relation(layer), sql.Identifier(layer.key)), [key])).fetchone()
    if row is None:
        raise NotFound(f"no feature {fid!r} in collection {layer.id!r}")
    if expected != "*" and expected != row["etag"]:
        raise PreconditionFailed(f"feature {fid!r} changed since it was read (ETag {row['etag']!r}); read it again")
    _check_district(principal, layer, row)
    return key


async def create(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, queryables: Mapping[str, Queryable],
                 body: Any, content_crs: str | None) -> tuple[str, str]:
    """(the new feature's id, its ETag)."""
    feature = _feature(body)
    server_set = await _server_set_columns(conn, layer)
    values = _properties(layer, feature, server_set)
    if layer.key not in server_set and values.get(layer.key) is None and feature.get("id") is not None:
        key_check = CODE_CHECKS.get(layer.key)
        values[layer.key] = key_check(str(feature["id"])) if key_check else feature["id"]
    params = dict(values)
    columns = [sql.Identifier(name) for name in values] + [sql.Identifier("geom")]
    placeholders = [sql.Placeholder(name) for name in values] + [_geometry(layer, feature.get("geometry"), content_crs, params)]
    async with conn.transaction():
        row = await (await conn.execute(
            sql.SQL("INSERT INTO {} AS t ({}) VALUES ({})").format(
                relation(layer), sql.SQL(", ").join(columns), sql.SQL(", ").join(placeholders)) + _returning(layer),
            params)).fetchone()
        _check_district(principal, layer, row)
    return row["fid"], row["etag"]


async def _update(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, queryables: Mapping[str, Queryable],
                  fid: str, if_match: str | None, assignments: dict[str, sql.Composable], values: dict[str, Any]) -> str:
    async with conn.transaction():
        key = await _locked(conn, principal, layer, queryables, fid, if_match)
        row = await (await conn.execute(
            sql.SQL("UPDATE {} AS t SET {} WHERE {} = %(feature_key)s").format(
                relation(layer),
                sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(n), v) for n, v in assignments.items()),
                sql.Identifier(layer.key)) + _returning(layer),
            {**values, "feature_key": key})).fetchone()
        _check_district(principal, layer, row)
    return row["etag"]


def _same_key(layer: Layer, fid: str, values: Mapping[str, Any]) -> None:
    if layer.key in values and str(values[layer.key]) != fid:
        raise InvalidInput(f"a feature's {layer.key} cannot change ({fid} → {values[layer.key]}); delete it and create another")


async def replace(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, queryables: Mapping[str, Queryable],
                  fid: str, body: Any, if_match: str | None, content_crs: str | None) -> str:
    """PUT: the body is the whole feature; writable properties it leaves out return to their defaults."""
    feature = _feature(body)
    server_set = await _server_set_columns(conn, layer)
    values = _properties(layer, feature, server_set)
    _same_key(layer, fid, values)
    values.pop(layer.key, None)
    writable = [name for name in layer.properties if name not in server_set and name != layer.key]
    assignments = {name: sql.Placeholder(name) if name in values else sql.SQL("DEFAULT") for name in writable}
    assignments["geom"] = _geometry(layer, feature.get("geometry"), content_crs, values)
    return await _update(conn, principal, layer, queryables, fid, if_match, assignments, values)


async def update(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, queryables: Mapping[str, Queryable],
                 fid: str, body: Any, if_match: str | None, content_crs: str | None) -> str:
    """PATCH (JSON merge patch): only what the body names changes; null clears a property."""
    if not isinstance(body, dict) or not ({"geometry", "properties"} & body.keys()):
        raise InvalidInput("a merge patch names the geometry and/or properties to change")
    values = _properties(layer, body, await _server_set_columns(conn, layer))
    _same_key(layer, fid, values)
    values.pop(layer.key, None)
    assignments: dict[str, sql.Composable] = {name: sql.Placeholder(name) for name in values}
    if "geometry" in body:
        assignments["geom"] = _geometry(layer, body["geometry"], content_crs, values)
    if not assignments:
        raise InvalidInput("the patch changes nothing the server lets a client set")
    return await _update(conn, principal, layer, queryables, fid, if_match, assignments, values)


async def delete(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, queryables: Mapping[str, Queryable],
                 fid: str, if_match: str | None) -> None:
    async with conn.transaction():
        key = await _locked(conn, principal, layer, queryables, fid, if_match)
        await conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(relation(layer), sql.Identifier(layer.key)), [key])
