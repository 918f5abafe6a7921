"""A layer's queryables: its declared properties with their JSON types, read from the catalog.

Works for tables and views alike (pg_attribute); the geometry is queryable as `geometry`.
"""

from __future__ import annotations

from collections.abc import Iterable

from gis.cql import Queryable, QueryableType
from layers.catalogue import Layer

COLUMNS_SQL = (
    "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type "
    "FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
)
GEOMETRY_QUERYABLE = "geometry"


def json_type(pg_type: str) -> QueryableType:
    base = pg_type.split("(")[0].strip()
    if base in ("integer", "smallint", "bigint"):
        return "integer"
    if base in ("real", "double precision", "numeric"):
        return "number"
    if base == "boolean":
        return "boolean"
    if base.startswith("timestamp"):
        return "datetime"
    if base == "date":
        return "date"
    if base == "geometry":
        return "geometry"
    return "string"


def queryables_of(layer: Layer, columns: Iterable[dict]) -> dict[str, Queryable]:
    """Queryables from the rows of COLUMNS_SQL (run with the layer's relation)."""
    types = {row["name"]: json_type(row["type"]) for row in columns}
    exposed = dict.fromkeys((layer.key, *layer.properties))
    result = {name: Queryable(name, types[name]) for name in exposed if name in types}
    result[GEOMETRY_QUERYABLE] = Queryable(GEOMETRY_QUERYABLE, "geometry", column="geom")
    return result
