"""OGC API Features reads as SQL: a layer, a selection (bbox, datetime, property equality, CQL2),
an order and an output CRS become one parameterised statement.

PostGIS writes each feature's GeoJSON (`ST_AsGeoJSON` + `json_build_object`), so Python only
joins text; rows come through a server-side cursor in chunks, so a response of any length runs
in constant memory. Identifiers are composed with `psycopg.sql`; user values are always bound.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from pyproj import Transformer

from gis.cql import Queryable, compile_filter, parse
from gis.crs import STORAGE_SRID, ServedCrs, parse_bbox, parse_crs
from gis.errors import InvalidInput, NotFound
from layers import paging
from layers.catalogue import Layer
from layers.paging import SortTerm

CHUNK_ROWS = 1000
CITY_CENTRE = (118.28, 33.96)


def relation(layer: Layer) -> sql.Composable:
    return sql.Identifier(*layer.relation.split("."))


def column(name: str) -> sql.Composable:
    return sql.Identifier("t", name)


@lru_cache
def _same_coordinates_as_storage(srid: int) -> bool:
    """Whether PROJ maps CGCS2000 onto srid without moving a point (CGCS2000 → WGS 84 is a null
    transformation at this accuracy), so the stored coordinates can be sent as they are."""
    x, y = Transformer.from_crs(STORAGE_SRID, srid, always_xy=True).transform(*CITY_CENTRE)
    return (x, y) == CITY_CENTRE


def geometry_in(crs: ServedCrs) -> sql.Composable:
    """The feature geometry in crs, in that CRS's axis order."""
    if crs.srid == 3857:
        geometry: sql.Composable = column("geom_3857")
    elif _same_coordinates_as_storage(crs.srid):
        geometry = column("geom")
    else:
        geometry = sql.SQL("ST_Transform({}, {})").format(column("geom"), sql.Literal(crs.srid))
    return sql.SQL("ST_FlipCoordinates({})").format(geometry) if crs.lat_first else geometry


def decimals(crs: ServedCrs) -> int:
    return 8 if crs.geographic else 3  # both ≈ 1 mm


# -- queryables ----------------------------------------------------------------------------

JSON_SCHEMA_TYPES = {
    "string": {"type": "string"}, "number": {"type": "number"}, "integer": {"type": "integer"},
    "boolean": {"type": "boolean"}, "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
}


def queryables_schema(layer: Layer, queryables: Mapping[str, Queryable], url: str) -> dict:
    """The Part 3 queryables document (JSON Schema 2020-12)."""
    geometry_format = "geometry-" + ("any" if layer.geometry_type == "Geometry" else layer.geometry_type.lower())
    properties = {
        q.name: ({"title": "geometry", "format": geometry_format, "x-ogc-role": "primary-geometry"}
                 if q.type == "geometry" else {"title": q.name, **JSON_SCHEMA_TYPES[q.type]})
        for q in queryables.values()
    }
    properties[layer.key]["x-ogc-role"] = "id"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": url, "type": "object",
            "title": layer.title, "properties": properties, "additionalProperties": False}


# -- the selection --------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """What the request selects, as SQL with named bound parameters."""

    layer: Layer
    where: sql.Composable
    params: dict[str, Any]
    sort: tuple[SortTerm, ...]  # the requested order, then the key
    properties: tuple[str, ...]
    crs: ServedCrs
    query: str  # what selects and orders the features, as text: the cursors of its pages are signed over it

    @property
    def order(self) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{} {}").format(column(term.column), sql.SQL("DESC" if term.descending else "ASC"))
                                  for term in self.sort)


def select(layer: Layer, queryables: Mapping[str, Queryable], *, bbox: str | None = None,
           bbox_crs: str | None = None, datetime_value: str | None = None, equals: Mapping[str, str] | None = None,
           cql: str | None = None, filter_lang: str | None = None, filter_crs: str | None = None,
           sortby: str | None = None, properties: str | None = None, crs: str | None = None) -> Selection:
    clauses: list[sql.Composable] = [sql.SQL(layer.where)] if layer.where else []
    params: dict[str, Any] = {}
    if bbox is not None:
        clauses.append(_bbox_clause(parse_bbox(bbox, parse_crs(bbox_crs, parameter="bbox-crs")),
                                    parse_crs(bbox_crs, parameter="bbox-crs").srid, params))
    elif bbox_crs is not None:
        parse_crs(bbox_crs, parameter="bbox-crs")
    if datetime_value is not None:
        clauses.append(_datetime_clause(layer, datetime_value, params))
    expressions = [{"op": "=", "args": [{"property": name}, value]} for name, value in (equals or {}).items()]
    if cql is not None:
        expressions.append(parse(cql, filter_lang))
    elif filter_lang is not None or filter_crs is not None:
        raise InvalidInput("filter-lang and filter-crs go with a filter parameter")
    if expressions:
        target = parse_crs(filter_crs, parameter="filter-crs")
        compiled = compile_filter(expressions[0] if len(expressions) == 1 else {"op": "and", "args": expressions},
                                  queryables, filter_srid=target.srid, filter_lat_first=target.lat_first)
        clauses.append(compiled.clause)
        params.update(compiled.params)
    where = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE")
    query = json.dumps([layer.id, bbox, bbox_crs, datetime_value, sorted((equals or {}).items()), cql, filter_lang,
                        filter_crs, sortby], ensure_ascii=False)
    return Selection(layer, where, params, _sort(layer, queryables, sortby), _properties(layer, properties),
                     parse_crs(crs), query)


def _bbox_clause(boxes: list[tuple[float, ...]], srid: int, params: dict[str, Any]) -> sql.Composable:
    envelopes = []
    for i, box in enumerate(boxes):
        names = [f"bbox_{i}_{corner}" for corner in ("minx", "miny", "maxx", "maxy")]
        params.update(zip(names, box))
        envelopes.append(sql.SQL("ST_Intersects({}, ST_Transform(ST_MakeEnvelope({}, {}), {}))").format(
            column("geom"), sql.SQL(", ").join(sql.Placeholder(n) for n in names), sql.Literal(srid),
            sql.Literal(STORAGE_SRID)))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(envelopes))


def _instant(text: str, *, end: bool) -> datetime:
    """A datetime parameter bound: a date means its whole day (its start, or the next day's start)."""
    try:
        if "T" not in text.upper():
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), timezone.utc)
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidInput(f"datetime {text!r} is not an RFC 3339 date or date-time") from None


def _datetime_clause(layer: Layer, value: str, params: dict[str, Any]) -> sql.Composable:
    if layer.datetime_column is None:
        raise InvalidInput(f"collection {layer.id!r} has no temporal property; drop the datetime parameter")
    target = column(layer.datetime_column)
    if "/" not in value:
        if "T" in value.upper():
            params["dt_at"] = _instant(value, end=False)
            return sql.SQL("{} = %(dt_at)s").format(target)
        value = f"{value}/{value}"
    start, _, end = value.partition("/")
    clauses = []
    if start not in ("", ".."):
        params["dt_start"] = _instant(start, end=False)
        clauses.append(sql.SQL("{} >= %(dt_start)s").format(target))
    if end not in ("", ".."):
        params["dt_end"] = _instant(end, end=True)
        exclusive = "T" not in end.upper()  # a date as the end means up to the end of that day
        clauses.append(sql.SQL("{} {} %(dt_end)s").format(target, sql.SQL("<" if exclusive else "<=")))
    if "dt_start" in params and "dt_end" in params and params["dt_start"] > params["dt_end"]:
        raise InvalidInput(f"datetime interval {value!r} ends before it starts")
    return sql.SQL("({})").format(sql.SQL(" AND ").join(clauses)) if clauses else sql.SQL("TRUE")


def _sort(layer: Layer, queryables: Mapping[str, Queryable], sortby: str | None) -> tuple[SortTerm, ...]:
    """The requested properties, then the key so that paging is stable."""
    terms = []
    for item in (sortby or "").split(","):
        item = item.strip()
        if not item:
            continue
        descending = item.startswith("-")
        name = item.lstrip("+- ")
        if name not in queryables or queryables[name].type == "geometry":
            sortable = ", ".join(n for n, q in queryables.items() if q.type != "geometry")
            raise InvalidInput(f"sortby names {name!r}, which is not a sortable property; use one of: {sortable}")
        terms.append(SortTerm(name, descending))
        if name == layer.key:  # unique: whatever follows it orders nothing
            return tuple(terms)
    return (*terms, SortTerm(layer.key, False))


def _properties(layer: Layer, requested: str | None) -> tuple[str, ...]:
    if requested is None:
        return layer.properties
    names = tuple(dict.fromkeys(n.strip() for n in requested.split(",") if n.strip()))  # each column once
    unknown = [n for n in names if n not in layer.properties]
    if unknown:
        raise InvalidInput(f"properties names unknown {', '.join(unknown)}; this collection has: {', '.join(layer.properties)}")
    return names


# -- statements -----------------------------------------------------------------------------

def feature_json(selection: Selection) -> sql.Composable:
    """One feature as GeoJSON text, written by PostGIS."""
    members = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(n), column(n)) for n in selection.properties)
    return sql.SQL(
        """'{{"type":"Feature","id":' || to_json({key})::text || ',"geometry":' || """
        """coalesce(ST_AsGeoJSON({geometry}, {decimals}, 0), 'null') || ',"properties":' || """
        """json_build_object({members})::text || '}}'"""
    ).format(key=column(selection.layer.key), geometry=geometry_in(selection.crs),
             decimals=sql.Literal(decimals(selection.crs)), members=members)


def count_query(selection: Selection) -> sql.Composable:
    return sql.SQL("SELECT count(*) AS n FROM {} t WHERE {}").format(relation(selection.layer), selection.where)


def page_query(selection: Selection, output: str, after: sql.Composable | None = None) -> sql.Composable:
    """Rows of one text (`feature`, GeoJSON) or of columns plus WKT (`csv`), each with its sort key
    as text (`sort_0`…), with %(limit)s / %(offset)s; `after` (a keyset clause) starts past a cursor."""
    if output == "csv":
        columns = [
            sql.SQL("{} AS id").format(column(selection.layer.key)),
            *(column(n) for n in selection.properties),
            sql.SQL("ST_AsText({}, {}) AS geometry").format(geometry_in(selection.crs), sql.Literal(decimals(selection.crs))),
        ]
    else:
        columns = [sql.SQL("{} AS feature").format(feature_json(selection))]
    columns += [sql.SQL("{}::text AS {}").format(column(term.column), sql.Identifier(f"sort_{i}"))
                for i, term in enumerate(selection.sort)]
    where = selection.where if after is None else sql.SQL("({}) AND {}").format(selection.where, after)
    # The page is cut in a subquery and only its rows are written out: with the JSON in the same
    # SELECT, PostgreSQL built it for every skipped row too (offset 98,000 of the components: 1 s).
    return sql.SQL("SELECT {} FROM (SELECT * FROM {} t WHERE {} ORDER BY {} LIMIT %(limit)s OFFSET %(offset)s) t "
                   "ORDER BY {}").format(sql.SQL(", ").join(columns), relation(selection.layer), where,
                                         selection.order, selection.order)


def one_query(selection: Selection) -> sql.Composable:
    """One feature by key, with an ETag over the whole stored row (any change changes it)."""
    return sql.SQL("SELECT {} AS feature, md5(t::text) AS etag FROM {} t WHERE {} AND {} = %(fid)s").format(
        feature_json(selection), relation(selection.layer), selection.where, column(selection.layer.key))


async def count(conn: psycopg.AsyncConnection, selection: Selection) -> int:
    return (await (await conn.execute(count_query(selection), selection.params)).fetchone())["n"]


@dataclass(frozen=True)
class Page:
    """One page of features (GeoJSON texts), numberMatched where it was counted (a query's first
    page) and the cursor of the next page (None on the last)."""
    features: list[str]
    matched: int | None
    next_cursor: str | None


def _keyset(selection: Selection, paging_key: bytes, offset: int, cursor: str | None,
            params: dict[str, Any]) -> sql.Composable | None:
    """The keyset clause that continues after `cursor` (None without one)."""
    if cursor is None:
        return None
    if offset:
        raise InvalidInput("send either cursor (from a next link) or offset, not both")
    values = paging.verify(paging_key, selection.query, cursor, len(selection.sort))
    return paging.after_clause(selection.sort, values, params)


async def read_page(conn: psycopg.AsyncConnection, selection: Selection, limit: int, offset: int = 0,
                    cursor: str | None = None, *, paging_key: bytes, with_count: bool) -> Page:
    """The page of `limit` features after `offset` features, or after a `cursor` from a next link.
    Count and page are one statement: one snapshot, so the two agree, and one round trip. Under
    load every await of a request waits its turn on a busy event loop; a page read through a cursor
    in a transaction (nine statements) held its pooled connection for nine turns, and requests
    queued on the pool past its timeout (503s under 100 connections). A page is at most a few
    thousand features, so it is read whole; one row past `limit` tells whether a next page exists.
    The cursor key comes from the live catalogue (`LiveCatalogue.paging_key`), so a page is ONE statement."""
    params = {**selection.params, "limit": limit + 1, "offset": offset}
    after = _keyset(selection, paging_key, offset, cursor, params)
    sort_keys = sql.SQL(", ").join(sql.Identifier(f"sort_{i}") for i in range(len(selection.sort)))
    query = sql.SQL(
        "WITH page AS MATERIALIZED ({page}) "
        "SELECT {count} AS matched, coalesce((SELECT array_agg(feature) FROM page), '{{}}') AS features, "
        "(SELECT array_agg(ARRAY[{sort_keys}]) FROM page) AS sort_keys"
    ).format(page=page_query(selection, "feature", after),
             count=sql.SQL("({})").format(count_query(selection)) if with_count else sql.SQL("NULL::bigint"),
             sort_keys=sort_keys)
    row = await (await conn.execute(query, params)).fetchone()
    features = row["features"]
    if len(features) <= limit:
        return Page(features, row["matched"], None)
    return Page(features[:limit], row["matched"], paging.sign(paging_key, selection.query, row["sort_keys"][limit - 1]))


async def _rows(conn: psycopg.AsyncConnection, selection: Selection, output: str, limit: int, offset: int,
                cursor: str | None, paging_key: bytes) -> AsyncIterator[Any]:
    """A sentinel once the statement has run, then chunks of rows through a server-side cursor."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION READ ONLY")
        # a cursor is planned for its first 10 % by default (fast-start plans); we read it all
        await conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        params = {**selection.params, "limit": limit, "offset": offset}
        after = _keyset(selection, paging_key, offset, cursor, params)
        async with conn.cursor(name="features", row_factory=dict_row) as rows:
            await rows.execute(page_query(selection, output, after), params)
            yield None
            while chunk := await rows.fetchmany(CHUNK_ROWS):
                yield chunk


async def open_stream(conn: psycopg.AsyncConnection, selection: Selection, output: str, limit: int, offset: int = 0,
                      cursor: str | None = None, *, paging_key: bytes) -> AsyncIterator[list[dict]]:
    """The chunks of a stream (f=csv, f=jsonseq: up to the stream limit, too many to hold). The
    statement has run and its first chunk is in hand before this returns, so bad input (a cursor of
    another query too) fails here, as an HTTP error, not midway through a body."""
    rows = _rows(conn, selection, output, limit, offset, cursor, paging_key)
    await anext(rows)
    first = await anext(rows, [])

    async def chunks() -> AsyncIterator[list[dict]]:
        try:
            if first:
                yield first
                async for chunk in rows:
                    yield chunk
        finally:
            await rows.aclose()

    return chunks()


def feature_id(layer: Layer, queryables: Mapping[str, Queryable], text: str) -> str | int:
    """A path's feature id as the key column's type; a non-number for a numeric key names nothing."""
    if queryables[layer.key].type == "integer":
        try:
            return int(text)
        except ValueError:
            raise NotFound(f"no feature {text!r} in collection {layer.id!r}") from None
    return text


async def fetch_one(conn: psycopg.AsyncConnection, layer: Layer, queryables: Mapping[str, Queryable],
                    fid: str, crs: str | None = None) -> tuple[dict, str]:
    """(the feature, its ETag) or NotFound."""
    selection = select(layer, queryables, crs=crs)
    row = await (await conn.execute(one_query(selection), {**selection.params, "fid": feature_id(layer, queryables, fid)})).fetchone()
    if row is None:
        raise NotFound(f"no feature {fid!r} in collection {layer.id!r}")
    return json.loads(row["feature"]), row["etag"]
