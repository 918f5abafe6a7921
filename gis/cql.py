"""CQL2 filters (text or JSON) compiled to parameterised SQL.

The `cql2` package parses; we walk its JSON form and emit psycopg `sql`
composables with `%s` placeholders, so no user value is ever formatted into SQL text and only
declared queryables can be named. Geometry literals are in CRS84 (or `filter-crs`) and are
transformed to the layer's storage SRID; a lat/lon `filter-crs` (EPSG:4326, 4490, the GK zones)
has its coordinates swapped to x/y first, as OGC axis order requires.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cql2
from psycopg import sql

from gis.errors import InvalidInput
from gis.crs import STORAGE_SRID

QueryableType = Literal["string", "number", "integer", "boolean", "datetime", "date", "geometry"]
CRS84_SRID = 4326

COMPARISONS = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
SPATIAL = {
    "s_intersects": "ST_Intersects", "s_equals": "ST_Equals", "s_disjoint": "ST_Disjoint",
    "s_touches": "ST_Touches", "s_within": "ST_Within", "s_overlaps": "ST_Overlaps",
    "s_crosses": "ST_Crosses", "s_contains": "ST_Contains",
}
ARRAY_OPS = {"a_equals": "=", "a_contains": "@>", "a_containedby": "<@", "a_overlaps": "&&"}
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
    try:
        source = json.dumps(expression) if isinstance(expression, dict) else expression
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


def compile_filter(expression: str | dict, queryables: Mapping[str, Queryable], *,
                   lang: str | None = None, filter_srid: int = CRS84_SRID,
                   filter_lat_first: bool = False, param_prefix: str = "cql_") -> CompiledFilter:
    """`param_prefix` names the placeholders, so that filters compiled for several tables can run
    in one statement."""
    return _Compiler(queryables, filter_srid, filter_lat_first, param_prefix).compile(parse(expression, lang))


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
        return CompiledFilter(clause, self.params)

    # -- booleans -----------------------------------------------------------------------
    def boolean(self, node: Any) -> sql.Composable:
        if isinstance(node, bool):
            return sql.SQL("TRUE" if node else "FALSE")
        if not isinstance(node, dict) or "op" not in node:
            raise InvalidInput(f"filter: expected a predicate, got {json.dumps(node)[:80]}")
        op, args = node["op"].lower(), node.get("args", [])
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

    def queryable(self, name: str) -> Queryable:
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
                return self.bind(node["timestamp"], "timestamptz")
            if "date" in node:
                return self.bind(node["date"], "date")
            if node.get("op", "").lower() in ("casei", "accenti"):
                inner = self.operand(node["args"][0], kind)
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
            if len(box) not in (4, 6):
                raise InvalidInput("filter: a BBOX has 4 (or 6) numbers")
            minx, miny, maxx, maxy = (box[0], box[1], box[2], box[3]) if len(box) == 4 else (box[0], box[1], box[3], box[4])
            if self.filter_lat_first:
                minx, miny, maxx, maxy = miny, minx, maxy, maxx
            corners = [self.bind(v, "float8") for v in (minx, miny, maxx, maxy)]
            return sql.SQL("ST_Transform(ST_MakeEnvelope({}, {}, {}, {}, {}), {})").format(
                *corners, self.bind(self.filter_srid, "int"), sql.Literal(STORAGE_SRID))
        if isinstance(node, dict) and "type" in node and ("coordinates" in node or "geometries" in node):
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
        return self.bind(end, "timestamptz")

    def array(self, node: Any) -> sql.Composable:
        if isinstance(node, dict) and "property" in node:
            # no layer publishes an array column, so an array operator on a property cannot hold
            raise InvalidInput(f"filter: {self.queryable(node['property']).name!r} is not an array property")
        if isinstance(node, list):
            return self.bind([str(v) for v in node], "text[]")
        raise InvalidInput("filter: array operators take a property or a list")
