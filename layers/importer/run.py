"""One import: read the file into the staging table, check it set-wise, write the good rows.

Everything happens in the caller's transaction: the caller commits, so the import lands whole or
not at all (a truncated file, a database error or too many rejects leave the database as it was).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psycopg

from gis.source_crs import SourceCrs, parse_crs
from gis.errors import InvalidInput
from layers.live import resolve
from layers.importer import checks, validate
from layers.importer.load import allocate_objcodes, check_values, check_visible, clear_layer, plan_columns, write_rows
from layers.importer.mapping import load_mapping
from layers.importer.source import Source, SourceLayer, open_source
from layers.importer.stage import copy_layer, create_stage, merge_osm_tags
from layers.importer.targets import describe_target

Mode = Literal["append", "replace", "upsert"]
# (phase, rows just done, phase total or 0 when unknown): the CLI's bars and the API's job row use it.
Progress = Callable[[str, int, int], None]
REJECTS_LISTED = 1000


@dataclass(frozen=True)
class ImportOptions:
    layer: str | None = None
    crs: str | None = None
    field_map: dict[str, str] = field(default_factory=dict)
    mode: Mode = "append"
    key: str | None = None
    mapping: str | None = None
    district: str | None = None
    class_code: str | None = None
    where: str | None = None
    max_rejects: int | None = None
    dry_run: bool = False


@dataclass
class ImportReport:
    file: str
    source_layers: list[str]
    read: int = 0
    skipped: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    repaired: int = 0
    rejected: int = 0
    rejects: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _source_crs(source: Source, layer: SourceLayer, declared: str | None) -> SourceCrs:
    if declared:
        return parse_crs(declared)
    if layer.crs:
        return parse_crs(layer.crs)
    if source.driver == "CSV":
        return parse_crs("EPSG:4326")  # lon/lat columns: degrees; the outside-city check catches projected metres
    raise InvalidInput(f"{source.label} declares no coordinate system (a Shapefile without its .prj?): pass --crs, "
                       "e.g. --crs EPSG:4490 (CGCS2000), EPSG:4548 / EPSG:4549 (Gauss-Krüger CM 117E / 120E), gcj02 or bd09")


def _check_options(conn: psycopg.Connection, options: ImportOptions, has_rules: bool) -> None:
    if options.layer is None and not has_rules:
        raise InvalidInput("say where the rows go: --layer ID, or a --mapping file with rules")
    if options.layer:
        resolve(conn, options.layer)
    if options.mode == "upsert" and not options.key:
        raise InvalidInput("--mode upsert needs --key COLUMN (the column that identifies a feature)")
    if options.district and not (options.district.isdigit() and len(options.district) == 6):
        raise InvalidInput(f"--district wants a 6-digit GB/T 2260 code, got {options.district!r}")


def import_file(conn: psycopg.Connection, path: Path, options: ImportOptions, progress: Progress | None = None) -> ImportReport:
    """Import `path` in the caller's transaction; the caller commits (or rolls back a dry run)."""
    tell = progress or (lambda *_: None)
    mapping = load_mapping(options.mapping).restricted_to(options.layer).with_columns(options.field_map)
    _check_options(conn, options, bool(mapping.rules))
    source = open_source(path, mapping.source_layers, options.where)
    crs_of = {layer.name: _source_crs(source, layer, options.crs) for layer in source.layers}
    report = ImportReport(file=source.label, source_layers=[layer.name for layer in source.layers], dry_run=options.dry_run)

    create_stage(conn)
    fields: set[str] = set()
    total = source.total_features or 0
    for layer in source.layers:
        fields |= copy_layer(conn, source, layer, crs_of[layer.name], options.where, lambda n: tell("read", n, total))
    report.read = conn.execute("SELECT count(*) AS n FROM import_stage").fetchone()["n"]
    if source.is_osm:
        merge_osm_tags(conn)
    report.skipped = validate.assign_layers(conn, mapping, options.layer, options.class_code)
    conn.execute("ANALYZE import_stage")  # a temp table has no statistics until asked; plans need them (and layer_id)
    layer_ids = [r["layer_id"] for r in conn.execute("SELECT DISTINCT layer_id FROM import_stage ORDER BY 1").fetchall()]
    targets = {layer_id: describe_target(conn, layer_id) for layer_id in layer_ids}
    report.repaired = validate.check_geometry(conn, targets)
    components = [i for i, t in targets.items() if t.is_component]
    validate.check_component_codes(conn, components)
    validate.assign_counties(conn, components + [i for i, t in targets.items()
                                                 if not t.is_component and "district_code" in t.table.columns], options.district)
    plans = {i: plan_columns(t.table, mapping, fields, explicit=options.field_map) for i, t in targets.items()}
    for layer_id, plan in plans.items():
        check_values(conn, layer_id, plan)
    if options.mode == "replace":
        report.deleted = {i: clear_layer(conn, t) for i, t in targets.items()}
    if components:
        allocate_objcodes(conn, components)
    for layer_id, target in targets.items():
        key = options.key or target.layer.key
        if key not in plans[layer_id].values:
            continue
        if options.mode == "upsert" and key not in target.table.unique_keys:
            raise InvalidInput(f"--key {key} does not identify rows of {target.table.name}; unique columns: "
                               f"{', '.join(sorted(target.table.unique_keys))}")
        validate.check_key(conn, layer_id, target.table.name, key, plans[layer_id].values[key], must_be_new=options.mode != "upsert")
    validate.index_geometry(conn)
    warnings = [checks.outside_city(conn)]
    if not any(crs.is_offset for crs in crs_of.values()):
        warnings.append(checks.web_offset(conn))
    report.warnings = [w for w in warnings if w]
    if components:
        validate.assign_grids(conn, components)
    tell("check", 1, 1)
    _collect_rejects(conn, report)
    if options.max_rejects is not None and report.rejected > options.max_rejects:
        first = report.rejects[0]
        raise InvalidInput(f"{report.rejected:,} rows rejected (more than --max-rejects {options.max_rejects}); "
                           f"first: row {first['row']}: {first['reason']}. Nothing was imported")

    for layer_id, target in targets.items():
        upsert_key = (options.key or target.layer.key) if options.mode == "upsert" else None
        try:
            inserted, updated = write_rows(conn, target, plans[layer_id], mapping, fields, upsert_key)
        except psycopg.errors.IntegrityError as exc:
            raise InvalidInput(f"the database refused a row for layer {layer_id} ({exc.diag.constraint_name or 'a constraint'}: "
                               f"{exc.diag.message_primary}); nothing was imported") from exc
        if target.is_component and (target.layer.relation != target.table.name or target.layer.where):
            check_visible(conn, target)
        report.inserted[layer_id], report.updated[layer_id] = inserted, updated
        tell(f"write {layer_id}", inserted + updated, inserted + updated)
    return report


def _collect_rejects(conn: psycopg.Connection, report: ImportReport) -> None:
    report.rejected = conn.execute("SELECT count(*) AS n FROM import_stage WHERE reason IS NOT NULL").fetchone()["n"]
    report.rejects = [
        {"row": r["row_no"], "source_layer": r["src_layer"], "layer": r["layer_id"], "reason": r["reason"]}
        for r in conn.execute("SELECT row_no, src_layer, layer_id, reason FROM import_stage WHERE reason IS NOT NULL "
                              "ORDER BY src_layer, row_no LIMIT %s", [REJECTS_LISTED]).fetchall()
    ]
