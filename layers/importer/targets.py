"""Where imported rows go: the base table behind a catalogue layer, read from the database catalogue.

Table layers write their `relation`; component layers (views over city.component joined to an
extension table) write city.component plus the extension table the layer's view needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from gis.errors import InvalidInput
from layers.catalogue import Layer
from layers.live import resolve

COMPONENT_TABLE = "city.component"
# A component layer whose view shows one class needs no class in the source.
SINGLE_CLASS_LAYERS = {"streetlights": "0118", "video_cameras": "0136"}
# Values a row gets when the source has none; trusted SQL over the first-level row `m`.
DERIVED = {
    "city.district": {
        "municipality_code": "left(m.code, 4) || '00'",
        "kind": "CASE WHEN m.name LIKE '%区' THEN '市辖区' WHEN m.name LIKE '%县' THEN '县' ELSE '县级市' END",
    },
    "city.component": {
        "objname": "(SELECT cc.name FROM city.component_class cc WHERE cc.code = substr(m.objcode, 7, 4))",
        "bgcode": "m._stage_bgcode",  # validate.assign_grids looked it up set-wise

    },
    "city.streetlight": {"control_group": "'未分组'"},
}

COLUMNS_SQL = """
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.atthasdef AS has_default
FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  AND NOT (a.atthasdef AND pg_get_expr((SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum), a.attrelid) LIKE 'nextval(%%')
ORDER BY a.attnum
"""
UNIQUE_SQL = """
SELECT array_agg(a.attname ORDER BY a.attname) AS columns
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisunique GROUP BY i.indexrelid
"""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    has_default: bool


@dataclass(frozen=True)
class Table:
    name: str  # schema-qualified
    columns: dict[str, Column]
    unique_keys: frozenset[str]

    @property
    def schema_table(self) -> tuple[str, str]:
        schema, table = self.name.split(".")
        return schema, table


@dataclass(frozen=True)
class Target:
    layer: Layer
    table: Table
    geometry_type: str  # POINT, LINESTRING, POLYGON, MULTIPOLYGON, or GEOMETRY (by class)
    extensions: tuple[Table, ...]

    @property
    def is_component(self) -> bool:
        return self.table.name == COMPONENT_TABLE


def _table(conn: psycopg.Connection, name: str) -> Table:
    columns = {r["name"]: Column(**r) for r in conn.execute(COLUMNS_SQL, [name]).fetchall()}
    keys = frozenset(r["columns"][0] for r in conn.execute(UNIQUE_SQL, [name]).fetchall() if len(r["columns"]) == 1)
    return Table(name, columns, keys)


def describe_target(conn: psycopg.Connection, layer_id: str) -> Target:
    layer = resolve(conn, layer_id)
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [layer.relation]).fetchone()["relkind"]
    if kind == "r":
        base, extensions = layer.relation, ()
    elif COMPONENT_TABLE in layer.tables:
        base, extensions = COMPONENT_TABLE, tuple(t for t in layer.tables if t != COMPONENT_TABLE)
    else:
        raise InvalidInput(f"layer {layer_id!r} is a derived view; import into its base layer instead")
    schema, table = base.split(".")
    geometry_type = conn.execute(
        "SELECT type FROM geometry_columns WHERE f_table_schema = %s AND f_table_name = %s AND f_geometry_column = 'geom'",
        [schema, table]).fetchone()
    if geometry_type is None:
        raise InvalidInput(f"layer {layer_id!r} has no geometry to import into")
    return Target(layer, _table(conn, base), geometry_type["type"], tuple(_table(conn, t) for t in extensions))
