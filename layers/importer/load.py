"""From the checked staging rows into the layer's base table (and extension table), set-wise.

Column values come, in order of precedence, from: the mapping (or --map), a source field of the
same name, the mapping's constants, what the importer itself decided (geometry, objcode, county),
and trusted derivations (targets.DERIVED) over the row built so far.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from gis.errors import InvalidInput
from layers.importer.mapping import FieldSource, Mapping
from layers.importer.targets import DERIVED, Table, Target
from layers.importer.validate import _reject

# What a text value must look like before it is cast, so a bad value rejects its row, not the import.
VALUE_PATTERNS = {
    "integer": (r"^\s*[-+]?[0-9]+(\.0*)?\s*$", "numeric::"),
    "number": (r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$", ""),
    "date": (r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}", ""),
    "boolean": (r"^\s*(?i:true|false|t|f|yes|no|y|n|1|0)\s*$", ""),
}
IMPORTER_DECIDES = {"geom": sql.SQL("s.geom"), "objcode": sql.SQL("s.objcode")}


def _kind(pg_type: str) -> str | None:
    if pg_type in ("smallint", "integer", "bigint"):
        return "integer"
    if pg_type in ("real", "double precision") or pg_type.startswith("numeric"):
        return "number"
    if pg_type == "date" or pg_type.startswith("timestamp"):
        return "date"
    if pg_type == "boolean":
        return "boolean"
    return None


@dataclass(frozen=True)
class ColumnPlan:
    """For one table: column -> SQL over stage row `s`, and the source values to check first."""

    values: dict[str, sql.Composable]
    checked: dict[str, tuple[str, sql.Composable, str]]  # column -> (field, text value, pg type)


def plan_columns(table: Table, mapping: Mapping, source_fields: set[str], *, explicit: dict[str, str]) -> ColumnPlan:
    unknown = [c for c in explicit if c not in table.columns and c not in ("objcode", "class_code")]
    if unknown:
        raise InvalidInput(f"--map names column(s) {', '.join(unknown)} that {table.name} does not have; "
                           f"its columns are {', '.join(table.columns)}")
    by_lower = {f.lower(): f for f in source_fields}
    values: dict[str, sql.Composable] = {}
    checked: dict[str, tuple[str, sql.Composable, str]] = {}
    for name, column in table.columns.items():
        if name in IMPORTER_DECIDES:
            values[name] = IMPORTER_DECIDES[name]
            continue
        source = mapping.columns.get(name)
        if source is None and name in by_lower:
            source = FieldSource(field=by_lower[name])
        if isinstance(source, FieldSource):
            text = source.value()
            values[name] = sql.SQL("({})::{}").format(text, sql.SQL(column.type))
            if _kind(column.type):
                values[name] = sql.SQL("({})::{}{}").format(text, sql.SQL(VALUE_PATTERNS[_kind(column.type)][1]), sql.SQL(column.type))
            checked[name] = (source.field, text, column.type)
        elif name in mapping.set:
            values[name] = sql.SQL("{}::{}").format(sql.Literal(mapping.set[name]), sql.SQL(column.type))
        elif name == "district_code":
            values[name] = sql.SQL("s.county")
    if "attrs" in table.columns and "attrs" not in values and table.name == "city.component":
        # class-specific attributes (e.g. OSM tags): whatever the columns did not take
        used = sorted({field for field, _, _ in checked.values()} | {"objcode", "class_code", "district_code"})
        values["attrs"] = sql.SQL("jsonb_strip_nulls(s.props) - {}::text[]").format(sql.Literal(used))
    return ColumnPlan(values, checked)


def check_values(conn: psycopg.Connection, layer_id: str, plan: ColumnPlan) -> None:
    """Reject rows whose field text cannot become the column's type, or is too long for a char(n)."""
    for column, (field, text, pg_type) in plan.checked.items():
        kind = _kind(pg_type)
        width = re.fullmatch(r"character(?: varying)?\((\d+)\)", pg_type)
        if kind:
            bad = sql.SQL("{} !~ {}").format(text, sql.Literal(VALUE_PATTERNS[kind][0]))
            why = f"is not a valid {pg_type} for column {column}"
        elif width:
            bad = sql.SQL("length({}) > {}").format(text, sql.Literal(int(width.group(1))))
            why = f"is longer than column {column}'s {width.group(1)} characters"
        else:
            continue
        _reject(conn, sql.SQL("layer_id = {} AND {} IS NOT NULL AND {}").format(sql.Literal(layer_id), text, bad),
                sql.SQL("'field ' || {} || ' value ' || quote_literal({}) || ' ' || {}").format(sql.Literal(field), text, sql.Literal(why)))


def _or_derived(column: str, derivation: str | None) -> sql.Composable:
    """A source value, falling back to the derivation where the source row has none."""
    value = sql.SQL("m.{}").format(sql.Identifier(column))
    return sql.SQL("coalesce({}, {})").format(value, sql.SQL(derivation)) if derivation else value


def _insert_sql(table: Table, plan: ColumnPlan, layer_id: str, on_conflict: sql.Composable) -> sql.Composed:
    provided = list(plan.values)
    derivable = {c: e for c, e in DERIVED.get(table.name, {}).items() if c in table.columns}
    derived = {c: e for c, e in derivable.items() if c not in plan.values}
    columns = provided + list(derived)
    statement = sql.SQL(
        "INSERT INTO {table} ({columns}) SELECT {selected} FROM (SELECT {first}, s.bgcode AS _stage_bgcode FROM import_stage s "
        "WHERE s.layer_id = {layer} AND s.reason IS NULL ORDER BY s.src_layer, s.row_no) m"
    ).format(
        table=sql.Identifier(*table.schema_table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        selected=sql.SQL(", ").join([_or_derived(c, derivable.get(c)) for c in provided]
                                    + [sql.SQL(e) for e in derived.values()]),
        first=sql.SQL(", ").join(sql.SQL("{} AS {}").format(v, sql.Identifier(c)) for c, v in plan.values.items()),
        layer=sql.Literal(layer_id),
    )
    return statement + on_conflict


def write_rows(conn: psycopg.Connection, target: Target, plan: ColumnPlan, mapping: Mapping, source_fields: set[str],
               upsert_key: str | None) -> tuple[int, int]:
    """Insert (or upsert) the layer's good rows and their extension rows; returns (inserted, updated)."""
    on_conflict = sql.SQL("")
    if upsert_key:
        on_conflict = sql.SQL(" ON CONFLICT ({key}) DO UPDATE SET {sets}").format(
            key=sql.Identifier(upsert_key),
            sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                    for c in plan.values if c != upsert_key))
    if upsert_key:
        statement = _insert_sql(target.table, plan, target.layer.id, on_conflict + sql.SQL(" RETURNING (xmax = 0) AS inserted"))
        rows = conn.execute(statement).fetchall()
        inserted, updated = sum(1 for r in rows if r["inserted"]), sum(1 for r in rows if not r["inserted"])
    else:  # a plain INSERT: the row count says it all, no need to send every row back
        inserted, updated = conn.execute(_insert_sql(target.table, plan, target.layer.id, on_conflict)).rowcount, 0
    for extension in target.extensions:
        extension_plan = plan_columns(extension, mapping, source_fields, explicit={})
        derived = DERIVED.get(extension.name, {})
        needed = [c for c, col in extension.columns.items()
                  if col.not_null and not col.has_default and c not in extension_plan.values and c not in derived]
        if needed:  # e.g. a manhole sensor needs a device id the source lacks: the cover stays unmonitored
            continue
        conn.execute(_insert_sql(extension, extension_plan, target.layer.id, sql.SQL(" ON CONFLICT DO NOTHING")))
    return inserted, updated


def allocate_objcodes(conn: psycopg.Connection, layers: list[str]) -> None:
    """Serials per (county, class) continue after the highest in the table or the file."""
    # Two imports allocating at once would pick the same serials; the lock makes them take turns.
    conn.execute("LOCK TABLE city.component IN SHARE ROW EXCLUSIVE MODE")
    conn.execute("ANALYZE import_stage")
    conn.execute("""
        WITH need AS (
            SELECT ctid AS id, county, class_code,
                   row_number() OVER (PARTITION BY county, class_code ORDER BY src_layer, row_no) AS n
            FROM import_stage WHERE objcode IS NULL AND reason IS NULL AND layer_id = ANY(%(layers)s)),
        top AS MATERIALIZED (  -- the highest serial per prefix, by a range scan of the objcode primary key
            SELECT p.county, p.class_code, greatest(
                (SELECT right(max(c.objcode), 6)::int FROM city.component c
                 WHERE c.objcode BETWEEN (p.county || p.class_code || '000000')::char(16)
                                     AND (p.county || p.class_code || '999999')::char(16)),
                (SELECT max(right(o.objcode, 6)::int) FROM import_stage o
                 WHERE o.objcode IS NOT NULL AND o.reason IS NULL AND left(o.objcode, 10) = p.county || p.class_code)) AS serial
            FROM (SELECT DISTINCT county, class_code FROM need) p)
        UPDATE import_stage s SET objcode = need.county || need.class_code || lpad((coalesce(top.serial, 0) + need.n)::text, 6, '0')
        FROM need LEFT JOIN top USING (county, class_code)
        WHERE s.ctid = need.id""", {"layers": layers})
    _reject(conn, sql.SQL("length(objcode) > 16"),
            sql.SQL("'no serial left: county ' || county || ' class ' || class_code || ' would pass 999999'"))


def clear_layer(conn: psycopg.Connection, target: Target) -> int:
    """--mode replace: remove what the layer shows now (for component layers, only those classes)."""
    layer = target.layer
    where = sql.SQL(" WHERE {}").format(sql.SQL(layer.where)) if layer.where else sql.SQL("")
    if target.is_component:
        statement = sql.SQL("DELETE FROM city.component WHERE objcode IN (SELECT objcode FROM {}{})").format(
            sql.Identifier(*layer.relation.split(".")), where)
    else:
        statement = sql.SQL("DELETE FROM {}{}").format(sql.Identifier(*layer.relation.split(".")), where)
    try:
        with conn.transaction():
            return conn.execute(statement).rowcount
    except psycopg.errors.ForeignKeyViolation as exc:
        raise InvalidInput(f"cannot replace layer {layer.id}: other data still refers to its features "
                           f"({exc.diag.message_primary}); nothing was imported") from exc


def check_visible(conn: psycopg.Connection, target: Target) -> None:
    """A component layer's view shows only some classes; rows it would not show are a mapping mistake."""
    layer = target.layer
    where = sql.SQL(" AND {}").format(sql.SQL(layer.where)) if layer.where else sql.SQL("")
    row = conn.execute(sql.SQL(
        "SELECT s.row_no, s.src_layer, s.class_code FROM import_stage s WHERE s.layer_id = {} AND s.reason IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM {} v WHERE v.objcode = s.objcode::char(16){}) LIMIT 1").format(
        sql.Literal(layer.id), sql.Identifier(*layer.relation.split(".")), where)).fetchone()
    if row:
        raise InvalidInput(f"row {row['row_no']} ({row['src_layer']}): class {row['class_code']} is not shown by layer "
                           f"{layer.id}; choose another --layer or --class. Nothing was imported")
