"""OGC API Features Part 4 writes on editable layers: create, replace, update (merge patch), delete.

Each write is one transaction that locks the row, checks the caller's ETag (If-Match), role and
district, validates like an import (valid geometry of the layer's type, GB/T codes), and lets the
database constraints have the last word. Writes go through the tables, so the tile-invalidation
triggers see them.

Authorisation is checked on the ground truth, inside the writing transaction: a district-scoped
key may touch a feature only if the districts its geometry lies in — before the write and after
it — are all the key's (never a district label the client sent); codes that follow from the
location (district, unit grid) are derived by database triggers (migration 0010) and never taken
from a body; fields that record a decision (an illegal-building record's status and who confirmed
it) change only with the deciding role, compared on the row as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import shapely
from psycopg import sql
from shapely.geometry import shape

from gis import codes
from gis.cql import Queryable
from gis.crs import STORAGE_SRID, check_edges, parse_crs
from gis.errors import Forbidden, InvalidInput, NotFound, PreconditionFailed, PreconditionRequired
from gis.keys import GRANTS, Principal, Role
from gis.limits import LimitSettings
from gis.settings import settings_of
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


@dataclass(frozen=True)
class WriteRule:
    """Who may write a table's features, and which of its fields the server or one role alone sets."""

    writers: tuple[Role, ...] = ("editor",)
    creators: tuple[Role, ...] = ("editor",)
    deleters: tuple[Role, ...] = ("editor",)
    decided_by: Mapping[str, Role] = field(default_factory=dict)
    derived: frozenset[str] = frozenset()  # set by the database from the geometry (migration 0010)


WRITE_RULES: dict[str, WriteRule] = {
    "city.building": WriteRule(derived=frozenset({"district_code"})),
    "city.stall_site": WriteRule(derived=frozenset({"district_code", "bgcode"})),
    "city.component": WriteRule(derived=frozenset({"bgcode"})),
    "city.unit_grid": WriteRule(),
    # Only a reviewer decides an illegal-building record (confirms it, marks it legalised or
    # demolished, deletes it); an editor may correct its outline and notes.
    "city.illegal_building": WriteRule(
        writers=("editor", "reviewer"), creators=("reviewer",), deleters=("reviewer",),
        decided_by={"status": "reviewer", "confirmed_by": "reviewer", "confirmed_at": "reviewer"},
        derived=frozenset({"district_code"})),
}
# a key of none of these roles may write no feature at all (refused before its body is read)
WRITING_ROLES: tuple[Role, ...] = tuple(sorted({role for rule in (WriteRule(), *WRITE_RULES.values())
                                                for role in (*rule.writers, *rule.creators, *rule.deleters)}))
GROUND_DISTRICTS_SQL = (
    "SELECT coalesce(array_agg(d.code::text ORDER BY d.code), '{{}}') AS districts FROM city.district d, {} t "
    "WHERE t.{} = %s AND ST_Intersects(d.geom, t.geom) AND NOT ST_Touches(d.geom, t.geom)"
)


def rule_of(layer: Layer) -> WriteRule:
    return WRITE_RULES.get(layer.relation, WriteRule())


def _may(principal: Principal, roles: tuple[Role, ...]) -> bool:
    return any(role in GRANTS[principal.role] for role in roles)


def _require_any(principal: Principal, roles: tuple[Role, ...], action: str, layer: Layer) -> None:
    if not _may(principal, roles):
        raise Forbidden(f"{action} in collection {layer.id!r} needs a key with the {' or '.join(roles)} role; "
                        f"this key has the {principal.role} role")


async def _server_set_columns(conn: psycopg.AsyncConnection, layer: Layer) -> frozenset[str]:
    """Columns the database fills itself (generated, serial, derived from the geometry): a body may
    carry them (a feature read and sent back does) but cannot set them."""
    if layer.relation not in _generated:
        rows = await (await conn.execute(GENERATED_SQL, [layer.relation])).fetchall()
        _generated[layer.relation] = frozenset(row["name"] for row in rows) | rule_of(layer).derived
    return _generated[layer.relation]


# -- the body -------------------------------------------------------------------------------

def _geometry(layer: Layer, value: Any, content_crs: str | None, params: dict[str, Any]) -> sql.Composable:
    """A valid geometry of the layer's type as SQL (WKB bound in params, transformed to CGCS2000)."""
    if not isinstance(value, dict):
        raise InvalidInput("the feature needs a GeoJSON geometry")
    limit = settings_of(LimitSettings).feature_max_vertices
    if _positions(value.get("coordinates"), limit) > limit:
        raise InvalidInput(f"the geometry has more than {limit:,} vertices (CITYOPS_FEATURE_MAX_VERTICES)")
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
    if crs.geographic:
        check_edges(geometry)  # the geodesic area column would fail on it (a 500)
    params.update(geom_wkb=shapely.to_wkb(geometry), geom_srid=crs.srid)
    expression = sql.SQL("ST_Transform(ST_SetSRID(ST_GeomFromWKB(%(geom_wkb)s), %(geom_srid)s), {})").format(
        sql.Literal(STORAGE_SRID))
    return sql.SQL("ST_Multi({})").format(expression) if layer.geometry_type.startswith("Multi") else expression


def _positions(coordinates: Any, limit: int) -> int:
    """How many positions nested GeoJSON coordinates hold, counted without building a geometry
    (shapely takes seconds over 10⁶ vertices); stops counting past limit."""
    count, stack = 0, [coordinates]
    while stack and count <= limit:
        node = stack.pop()
        if isinstance(node, list) and node and isinstance(node[0], list):
            stack.extend(node)
        elif isinstance(node, list):
            count += 1
    return count


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

def _decided(layer: Layer) -> sql.Composable:
    """The row's decision fields as one JSON object, compared before and after a write."""
    pairs = [sql.SQL("{}, t.{}").format(sql.Literal(name), sql.Identifier(name)) for name in rule_of(layer).decided_by]
    return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(pairs))


def _returning(layer: Layer) -> sql.Composable:
    district = sql.Identifier(layer.district_column) if layer.district_column else sql.SQL("NULL")
    return sql.SQL(" RETURNING {}::text AS fid, {} AS district, md5(t::text) AS etag, {} AS decided").format(
        sql.Identifier(layer.key), district, _decided(layer))


def _check_district(principal: Principal, layer: Layer, row: Mapping[str, Any]) -> None:
    if principal.districts and layer.district_column is None:
        raise Forbidden(f"collection {layer.id!r} has no district, so only keys for all districts may change it")
    principal.require_district(row["district"])


async def _check_ground(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, key: Any,
                        which: str) -> None:
    """A district-scoped key may touch the feature only where its geometry lies in the key's districts."""
    if not principal.districts:
        return
    row = await (await conn.execute(sql.SQL(GROUND_DISTRICTS_SQL).format(
        relation(layer), sql.Identifier(layer.key)), [key])).fetchone()
    outside = [code for code in row["districts"] if code not in principal.districts]
    if outside or not row["districts"]:
        where = f"district {', '.join(outside)}" if outside else "no district of the city"
        raise Forbidden(f"this key may change only districts {', '.join(principal.districts)}; "
                        f"the feature's {which} geometry lies in {where}")


def _check_decisions(principal: Principal, layer: Layer, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Decision fields the caller's role may not decide must be as they were (compared as written)."""
    for name, role in rule_of(layer).decided_by.items():
        if role not in GRANTS[principal.role] and before.get(name) != after.get(name):
            raise Forbidden(f"only a key with the {role} role may change {name!r} of a feature in {layer.id!r} "
                            f"({before.get(name)!r} → {after.get(name)!r}); this key has the {principal.role} role")


async def _locked(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer,
                  queryables: Mapping[str, Queryable], fid: str, if_match: str | None) -> Any:
    """Lock the feature, check the caller saw its current state and may change where it lies; its key
    and its decision fields as they are."""
    expected = _etag(if_match)
    key = feature_id(layer, queryables, fid)
    district = sql.Identifier(layer.district_column) if layer.district_column else sql.SQL("NULL")
    row = await (await conn.execute(sql.SQL(
        "SELECT {} AS district, md5(t::text) AS etag, {} AS decided FROM {} t WHERE {} = %s FOR UPDATE").format(
        district, _decided(layer), relation(layer), sql.Identifier(layer.key)), [key])).fetchone()
    if row is None:
        raise NotFound(f"no feature {fid!r} in collection {layer.id!r}")
    if expected != "*" and expected != row["etag"]:
        raise PreconditionFailed(f"feature {fid!r} changed since it was read (ETag {row['etag']!r}); read it again")
    _check_district(principal, layer, row)
    await _check_ground(conn, principal, layer, key, "current")
    return key, row["decided"]


async def create(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, queryables: Mapping[str, Queryable],
                 body: Any, content_crs: str | None) -> tuple[str, str]:
    """(the new feature's id, its ETag)."""
    rule = rule_of(layer)
    _require_any(principal, rule.creators, "adding a feature", layer)
    feature = _feature(body)
    server_set = await _server_set_columns(conn, layer)
    values = _properties(layer, feature, server_set)
    for name, role in rule.decided_by.items():
        if name in values and role not in GRANTS[principal.role]:
            raise Forbidden(f"only a key with the {role} role may set {name!r} in {layer.id!r}")
    if "confirmed_by" in rule.decided_by and values.get("confirmed_by") is None:
        values["confirmed_by"] = principal.name  # the decision is the creating reviewer's
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
        await _check_ground(conn, principal, layer, row["fid"], "new")
    return row["fid"], row["etag"]


async def _update(conn: psycopg.AsyncConnection, principal: Principal, layer: Layer, queryables: Mapping[str, Queryable],
                  fid: str, if_match: str | None, assignments: dict[str, sql.Composable], values: dict[str, Any]) -> str:
    _require_any(principal, rule_of(layer).writers, "changing a feature", layer)
    async with conn.transaction():
        key, before = await _locked(conn, principal, layer, queryables, fid, if_match)
        row = await (await conn.execute(
            sql.SQL("UPDATE {} AS t SET {} WHERE {} = %(feature_key)s").format(
                relation(layer),
                sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(n), v) for n, v in assignments.items()),
                sql.Identifier(layer.key)) + _returning(layer),
            {**values, "feature_key": key})).fetchone()
        _check_district(principal, layer, row)
        await _check_ground(conn, principal, layer, key, "new")
        _check_decisions(principal, layer, before, row["decided"])
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
    _require_any(principal, rule_of(layer).deleters, "deleting a feature", layer)
    async with conn.transaction():
        key, _ = await _locked(conn, principal, layer, queryables, fid, if_match)
        await conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(relation(layer), sql.Identifier(layer.key)), [key])
