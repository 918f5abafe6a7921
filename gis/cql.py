"""CQL2 filters (text or JSON) compiled to parameterised SQL.

The `cql2` package parses; we walk its JSON form and emit psycopg `sql`
composables with `%s` placeholders, so no user value is ever formatted into SQL text and only
declared queryables can be named. Geometry literals are in CRS84 (or `filter-crs`) and are
transformed to the layer's storage SRID; a lat/lon `filter-crs` (EPSG:4326, 4490, the GK zones)
has its coordinates swapped to x/y first, as OGC axis order requires.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cql2
import shapely
import shapely.geometry
from psycopg import sql

from gis.errors import InvalidInput
from gis.crs import STORAGE_SRID
from gis.limits import LimitSettings
from gis.settings import settings_of

QueryableType = Literal["string", "number", "integer", "boolean", "datetime", "date", "geometry"]
CRS84_SRID = 4326

COMPARISONS = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
SPATIAL = {
    "s_intersects": "ST_Intersects", "s_equals": "ST_Equals", "s_disjoint": "ST_Disjoint",
    "s_touches": "ST_Touches", "s_within": "ST_Within", "s_overlaps": "ST_Overlaps",
    "s_crosses": "ST_Crosses", "s_contains": "ST_Contains",
}
ARRAY_OPS = {"a_equals": "=", "a_contains": "@>", "a_containedby": "<@", "a_overlaps": "&&"}
# How many arguments each operator takes (at least, at most); a malformed CQL2-JSON node is a 400.
ARITY: dict[str, tuple[int, int]] = {
    "and": (1, 10_000), "or": (1, 10_000), "not": (1, 1), "like": (2, 2), "between": (3, 3), "in": (2, 2),
    "isnull": (1, 1), "casei": (1, 1), "accenti": (1, 1),
    **{op: (2, 2) for op in COMPARISONS}, **{op: (2, 2) for op in SPATIAL}, **{op: (2, 2) for op in ARRAY_OPS},
}
NOT_WORD = re.compile(r"\bnot\b", re.IGNORECASE)
TEMPORAL = {"t_after", "t_before", "t_equals", "t_during", "t_intersects", "t_disjoint", "t_contains",
            "t_starts", "t_finishes", "t_startedby", "t_finishedby", "t_overlaps", "t_overlappedby",
            "t_meets", "t_metby"}


@dataclass(frozen=True)
class Queryable:
    name: str
    type: QueryableType
    column: str = ""

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.column or self.name)


@dataclass
class CompiledFilter:
    """A WHERE clause with named placeholders (`%(cql_0)s` …) and their values."""

    clause: sql.Composable
    params: dict[str, Any] = field(default_factory=dict)


def parse(expression: str | dict, lang: str | None = None) -> dict:
    """The JSON form of a CQL2 text or JSON expression, or InvalidInput with the parser's reason."""
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidInput(f"unsupported filter-lang {lang!r}; use cql2-text or cql2-json")
    source = json.dumps(expression) if isinstance(expression, dict) else expression
    check_size(source)
    try:
        if lang == "cql2-json" and isinstance(source, str):
            json.loads(source)
        # No expr.validate(): it checks against the CQL2 JSON Schema at ~85 ms a call, and the
        # compiler below already refuses every node it does not understand, with a reason.
        return cql2.Expr(source).to_json()
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"filter is not valid CQL2 JSON: {exc.msg}") from None
    except Exception as exc:  # the cql2 package raises its own parse/validation errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"filter does not parse as CQL2: {reason}") from None


def check_size(source: str) -> None:
    """Refuse a filter too long or too deeply nested before any parser sees it: the cql2 parser
    (and json) recurse once per level, and a few thousand nested `NOT (` overflow the C stack."""
    limits = settings_of(LimitSettings)
    if len(source) > limits.filter_max_chars:
        raise InvalidInput(f"filter is {len(source):,} characters long; the limit is {limits.filter_max_chars:,} "
                           "(CITYOPS_FILTER_MAX_CHARS)")
    depth = _nesting(source) + len(NOT_WORD.findall(_outside_quotes(source)))
    if depth > limits.filter_max_depth:
        raise InvalidInput(f"filter nests {depth} levels deep (brackets and NOT); the limit is "
                           f"{limits.filter_max_depth} (CITYOPS_FILTER_MAX_DEPTH)")


def _outside_quotes(source: str) -> str:
    """The text with quoted literals and identifiers blanked, so brackets and words in them do not count."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"", "''", source)


def _nesting(source: str) -> int:
    depth = deepest = 0
    for char in _outside_quotes(source):
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest


def compile_filter(expression: str | dict, queryables: Mapping[str, Queryable], *,
                   lang: str | None = None, filter_srid: int = CRS84_SRID,
                   filter_lat_first: bool = False, param_prefix: str = "cql_") -> CompiledFilter:
    """`param_prefix` names the placeholders, so that filters compiled for several tables can run
    in one statement."""
    compiler = _Compiler(queryables, filter_srid, filter_lat_first, param_prefix)
    tree = parse(expression, lang)
    try:
        return compiler.compile(tree)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        # a shape of CQL2-JSON no rule above foresaw: still the filter's fault, never a 500
        raise InvalidInput(f"filter is malformed CQL2 ({type(exc).__name__}: {str(exc)[:80]})") from None


class _Compiler:
    def __init__(self, queryables: Mapping[str, Queryable], filter_srid: int, filter_lat_first: bool = False,
                 param_prefix: str = "cql_"):
        self.queryables = queryables
        self.filter_srid = filter_srid
        self.filter_lat_first = filter_lat_first
        self.param_prefix = param_prefix
        self.params: dict[str, Any] = {}

    def compile(self, node: dict) -> CompiledFilter:
        clause = self.boolean(node)
        limit = settings_of(LimitSettings).filter_max_terms
        if len(self.params) > limit:
            raise InvalidInput(f"filter holds {len(self.params)} values; the limit is {limit} (CITYOPS_FILTER_MAX_TERMS)")
        return CompiledFilter(clause, self.params)

    @staticmethod
    def arguments(node: dict) -> list:
        """The node's args, their number checked against what its operator takes."""
        op, args = str(node["op"]).lower(), node.get("args", [])
        if not isinstance(args, list):
            raise InvalidInput(f"filter: the args of {op!r} must be a list")
        low, high = ARITY.get(op, (2, 2) if op in TEMPORAL else (0, 10_000))
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"at least {low}"
            raise InvalidInput(f"filter: {op!r} takes {wanted} argument{'s' if high > 1 else ''}, got {len(args)}")
        return args

    # -- booleans -----------------------------------------------------------------------
    def boolean(self, node: Any) -> sql.Composable:
        if isinstance(node, bool):
            return sql.SQL("TRUE" if node else "FALSE")
        if not isinstance(node, dict) or not isinstance(node.get("op"), str):
            raise InvalidInput(f"filter: expected a predicate, got {json.dumps(node)[:80]}")
        op, args = node["op"].lower(), self.arguments(node)
        if op in ("and", "or"):
            return sql.SQL("(") + sql.SQL(f" {op.upper()} ").join(self.boolean(a) for a in args) + sql.SQL(")")
        if op == "not":
            return sql.SQL("NOT (") + self.boolean(args[0]) + sql.SQL(")")
        if op in COMPARISONS:
            left, right = self.scalar_pair(args[0], args[1])
            return sql.SQL("({} {} {})").format(left, sql.SQL(COMPARISONS[op]), right)
        if op == "like":
            left, right = self.scalar_pair(args[0], args[1])
            return sql.SQL("({}::text LIKE {})").format(left, right)
        if op == "between":
            value = self.operand(args[0])
            kind = self.kind_of(args[0])
            return sql.SQL("({} BETWEEN {} AND {})").format(value, self.operand(args[1], kind), self.operand(args[2], kind))
        if op == "in":
            kind = self.kind_of(args[0])
            items = args[1] if isinstance(args[1], list) else [args[1]]
            if not items:
                raise InvalidInput("filter: IN needs at least one value")
            return sql.SQL("({} IN ({}))").format(self.operand(args[0]), sql.SQL(", ").join(self.operand(i, kind) for i in items))
        if op == "isnull":
            return sql.SQL("({} IS NULL)").format(self.operand(args[0]))
        if op in SPATIAL:
            return sql.SQL("{}({}, {})").format(sql.SQL(SPATIAL[op]), self.geometry(args[0]), self.geometry(args[1]))
        if op in TEMPORAL:
            return self.temporal(op, args[0], args[1])
        if op in ARRAY_OPS:
            return sql.SQL("({} {} {})").format(self.array(args[0]), sql.SQL(ARRAY_OPS[op]), self.array(args[1]))
        raise InvalidInput(f"filter: operator {node['op']!r} is not supported")

    # -- scalars ------------------------------------------------------------------------
    def kind_of(self, node: Any) -> QueryableType | None:
        if isinstance(node, dict) and "property" in node:
            return self.queryable(node["property"]).type
        return None

    def scalar_pair(self, a: Any, b: Any) -> tuple[sql.Composable, sql.Composable]:
        kind = self.kind_of(a) or self.kind_of(b)
        return self.operand(a, kind), self.operand(b, kind)

    def queryable(self, name: Any) -> Queryable:
        if not isinstance(name, str):
            raise InvalidInput(f"filter: a property name must be a string, not {json.dumps(name)[:40]}")
        try:
            return self.queryables[name]
        except KeyError:
            known = ", ".join(sorted(self.queryables)) or "none"
            raise InvalidInput(f"filter names unknown property {name!r}; queryables are: {known}") from None

    def operand(self, node: Any, kind: QueryableType | None = None) -> sql.Composable:
        if isinstance(node, dict):
            if "property" in node:
                q = self.queryable(node["property"])
                if q.type == "geometry":
                    raise InvalidInput(f"filter: {q.name!r} is a geometry; use a spatial operator such as S_INTERSECTS")
                return q.identifier
            if "timestamp" in node:
                return self.bind(_instant(node["timestamp"], "timestamp"), "timestamptz")
            if "date" in node:
                return self.bind(_instant(node["date"], "date"), "date")
            if str(node.get("op", "")).lower() in ("casei", "accenti"):
                inner = self.operand(self.arguments(node)[0], kind)
                return sql.SQL("lower({}::text)").format(inner) if node["op"].lower() == "casei" else inner
            raise InvalidInput(f"filter: unsupported expression {json.dumps(node)[:80]}")
        if isinstance(node, bool) or node is None:
            return self.bind(node, "boolean" if isinstance(node, bool) else None)
        if isinstance(node, (int, float)):
            if kind in ("string", "datetime", "date"):
                raise InvalidInput(f"filter compares a {kind} property with the number {node}")
            return self.bind(node, None)
        if isinstance(node, str):
            if kind in ("number", "integer"):
                try:
                    return self.bind(float(node) if kind == "number" else int(node), None)
                except ValueError:
                    raise InvalidInput(f"filter compares a numeric property with {node!r}") from None
            cast = {"datetime": "timestamptz", "date": "date"}.get(kind or "")
            return self.bind(node, cast)
        raise InvalidInput(f"filter: unsupported value {node!r}")

    def bind(self, value: Any, cast: str | None = None) -> sql.Composable:
        """A named placeholder for value: names keep values right whatever order the SQL reads them in."""
        name = f"{self.param_prefix}{len(self.params)}"
        self.params[name] = value
        placeholder = sql.Placeholder(name)
        return placeholder + sql.SQL("::" + cast) if cast else placeholder

    # -- geometry, time, arrays -----------------------------------------------------------
    def geometry(self, node: Any) -> sql.Composable:
        if isinstance(node, dict) and "property" in node:
            q = self.queryable(node["property"])
            if q.type != "geometry":
                raise InvalidInput(f"filter: {q.name!r} is not a geometry")
            return q.identifier
        if isinstance(node, dict) and "bbox" in node:
            box = node["bbox"]
            if not isinstance(box, list) or len(box) not in (4, 6) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
                raise InvalidInput("filter: a BBOX has 4 (or 6) numbers")
            minx, miny, maxx, maxy = (box[0], box[1], box[2], box[3]) if len(box) == 4 else (box[0], box[1], box[3], box[4])
            if self.filter_lat_first:
                minx, miny, maxx, maxy = miny, minx, maxy, maxx
            corners = [self.bind(v, "float8") for v in (minx, miny, maxx, maxy)]
            return sql.SQL("ST_Transform(ST_MakeEnvelope({}, {}, {}, {}, {}), {})").format(
                *corners, self.bind(self.filter_srid, "int"), sql.Literal(STORAGE_SRID))
        if isinstance(node, dict) and "type" in node and ("coordinates" in node or "geometries" in node):
            _check_geojson(node)
            literal = sql.SQL("ST_GeomFromGeoJSON({})").format(self.bind(json.dumps(node), "text"))
            if self.filter_lat_first:
                literal = sql.SQL("ST_FlipCoordinates({})").format(literal)
            return sql.SQL("ST_Transform(ST_SetSRID({}, {}), {})").format(
                literal, self.bind(self.filter_srid, "int"), sql.Literal(STORAGE_SRID))
        raise InvalidInput(f"filter: expected a geometry, got {json.dumps(node)[:80]}")

    def temporal(self, op: str, a: Any, b: Any) -> sql.Composable:
        start_a, end_a = self.instant_or_interval(a)
        start_b, end_b = self.instant_or_interval(b)
        rules = {
            "t_after": "({sa} > {eb})", "t_before": "({ea} < {sb})",
            "t_equals": "({sa} = {sb} AND {ea} = {eb})",
            "t_during": "({sa} > {sb} AND {ea} < {eb})", "t_contains": "({sa} < {sb} AND {ea} > {eb})",
            "t_intersects": "({sa} <= {eb} AND {ea} >= {sb})", "t_disjoint": "({sa} > {eb} OR {ea} < {sb})",
            "t_starts": "({sa} = {sb} AND {ea} < {eb})", "t_startedby": "({sa} = {sb} AND {ea} > {eb})",
            "t_finishes": "({ea} = {eb} AND {sa} > {sb})", "t_finishedby": "({ea} = {eb} AND {sa} < {sb})",
            "t_meets": "({ea} = {sb})", "t_metby": "({sa} = {eb})",
            "t_overlaps": "({sa} < {sb} AND {ea} > {sb} AND {ea} < {eb})",
            "t_overlappedby": "({sa} > {sb} AND {sa} < {eb} AND {ea} > {eb})",
        }
        return sql.SQL(rules[op]).format(sa=start_a, ea=end_a, sb=start_b, eb=end_b)

    def instant_or_interval(self, node: Any) -> tuple[sql.Composable, sql.Composable]:
        if isinstance(node, dict) and "interval" in node:
            if not isinstance(node["interval"], list) or len(node["interval"]) != 2:
                raise InvalidInput("filter: an INTERVAL has a start and an end")
            start, end = node["interval"]
            return self.interval_end(start, "-infinity"), self.interval_end(end, "infinity")
        if isinstance(node, dict) and "property" in node:
            q = self.queryable(node["property"])
            if q.type not in ("datetime", "date"):
                raise InvalidInput(f"filter: {q.name!r} is not a date or time")
            return q.identifier, q.identifier
        value = self.operand(node, "datetime")
        return value, value

    def interval_end(self, end: Any, open_value: str) -> sql.Composable:
        if end == "..":
            return self.bind(open_value, "timestamptz")
        if isinstance(end, dict):
            return self.operand(end)
        return self.bind(_instant(end, "interval end"), "timestamptz")

    def array(self, node: Any) -> sql.Composable:
        if isinstance(node, dict) and "property" in node:
            # no layer publishes an array column, so an array operator on a property cannot hold
            raise InvalidInput(f"filter: {self.queryable(node['property']).name!r} is not an array property")
        if isinstance(node, list):
            return self.bind([str(v) for v in node], "text[]")
        raise InvalidInput("filter: array operators take a property or a list")


def _instant(value: Any, what: str) -> str:
    """An ISO 8601 date or timestamp as given, or InvalidInput naming it (before the database sees it)."""
    try:
        if isinstance(value, str):
            (date.fromisoformat if what == "date" else datetime.fromisoformat)(value)
            return value
    except ValueError:
        pass
    raise InvalidInput(f"filter: {what} {str(value)[:40]!r} is not an ISO 8601 {'date' if what == 'date' else 'timestamp'}")


def _check_geojson(node: dict) -> None:
    """A GeoJSON literal that PostGIS will read, with no more vertices than a feature may have."""
    try:
        geometry = shapely.geometry.shape(node)
    except Exception as exc:  # shapely reports malformed GeoJSON with several exception types
        raise InvalidInput(f"filter: the geometry literal is not valid GeoJSON ({exc})") from None
    limit = settings_of(LimitSettings).feature_max_vertices
    if shapely.get_num_coordinates(geometry) > limit:
        raise InvalidInput(f"filter: the geometry literal has over {limit:,} vertices (CITYOPS_FEATURE_MAX_VERTICES)")
