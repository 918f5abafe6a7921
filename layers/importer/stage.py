"""The staging table: every source row lands here first (COPY), in CGCS2000, with its fields as jsonb.

All checks then run set-wise in SQL on this table; it lives in the import's transaction only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import psycopg
import pyarrow as pa
import shapely

from gis.source_crs import SourceCrs
from gis.crs import STORAGE_SRID
from layers.importer.source import Source, SourceLayer, record_batches

STAGE_DDL = """
CREATE TEMP TABLE import_stage (
    src_layer text NOT NULL,
    row_no bigint NOT NULL,
    geom geometry,
    props jsonb NOT NULL,
    layer_id text,
    class_code text,
    want text,
    county text,
    objcode text,
    bgcode text,
    reason text,
    repaired boolean NOT NULL DEFAULT false
) ON COMMIT DROP
"""
STAGE_COPY = "COPY import_stage (src_layer, row_no, geom, props, reason) FROM STDIN"

Progress = Callable[[int], None]


# Memory for this import's transaction only. A temp table lives in the backend's local buffers
# (8 MB by default): a 200,000-row stage is 30 MB before any UPDATE, so it would spill to disk.
IMPORT_SETTINGS = {"work_mem": "128MB", "maintenance_work_mem": "256MB"}
TEMP_BUFFERS = "256MB"


def create_stage(conn: psycopg.Connection) -> None:
    # set_config(..., true) is SET LOCAL: these statements also open the import's transaction, so
    # the savepoint below is a savepoint and not a transaction of its own that would reset them.
    for name, value in IMPORT_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, true)", [name, value])
    try:
        with conn.transaction():  # refused once this session has used a temp table: keep its size
            conn.execute("SELECT set_config('temp_buffers', %s, true)", [TEMP_BUFFERS])
    except psycopg.errors.InvalidParameterValue:
        pass
    conn.execute("DROP TABLE IF EXISTS import_stage")
    conn.execute(STAGE_DDL)


def _to_cgcs2000(wkb: np.ndarray, source_crs: SourceCrs) -> tuple[np.ndarray, np.ndarray]:
    """EWKB hex in EPSG:4490, and a reason for rows GEOS cannot read (e.g. a ring of two points)."""
    geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    unreadable = np.array([w is not None for w in wkb], dtype=bool) & shapely.is_missing(geoms)
    transform = source_crs.to_cgcs2000()
    moved = shapely.transform(geoms, lambda xy: np.column_stack(transform(xy[:, 0], xy[:, 1])))
    outside_crs = ~np.isfinite(shapely.bounds(moved)).all(axis=1) & ~shapely.is_empty(moved) & ~shapely.is_missing(moved)
    moved[outside_crs] = None
    ewkb = shapely.to_wkb(shapely.set_srid(moved, STORAGE_SRID), hex=True, include_srid=True)
    reasons = np.where(unreadable, "unreadable geometry (GEOS rejects it, e.g. a ring of fewer than 4 points)",
                       np.where(outside_crs, "coordinates lie outside the declared coordinate system's range", None))
    return ewkb, reasons


def _props_json(batch: pa.RecordBatch, geometry_column: str) -> list[str]:
    fields = batch.drop_columns([geometry_column]) if geometry_column in batch.schema.names else batch
    if fields.num_columns == 0:
        return ["{}"] * batch.num_rows
    frame = fields.to_pandas()
    text = frame.to_json(orient="records", lines=True, date_format="iso", force_ascii=False, default_handler=str)
    # split on "\n" only: to_json escapes it inside values, but not U+2028 and kin that splitlines() breaks on
    return text.split("\n")[: batch.num_rows]


def copy_layer(conn: psycopg.Connection, source: Source, layer: SourceLayer, source_crs: SourceCrs,
               where: str | None, progress: Progress) -> set[str]:
    """Stage one source layer; returns the field names it had."""
    field_names: set[str] = set()
    first_row = 1
    with record_batches(source, layer, where) as (geometry_column, batches), \
            conn.cursor().copy(STAGE_COPY) as copy:
        for batch in batches:
            field_names.update(n for n in batch.schema.names if n != geometry_column)
            wkb = batch.column(geometry_column).to_numpy(zero_copy_only=False) \
                if geometry_column in batch.schema.names else np.full(batch.num_rows, None, dtype=object)
            ewkb, reasons = _to_cgcs2000(wkb, source_crs)
            props = _props_json(batch, geometry_column)
            for k in range(batch.num_rows):
                copy.write_row((layer.name, first_row + k, ewkb[k], props[k], reasons[k]))
            first_row += batch.num_rows
            progress(batch.num_rows)
    return field_names


def merge_osm_tags(conn: psycopg.Connection) -> None:
    """GDAL's OSM driver puts most tags in other_tags (JSON); matching wants them beside the columns."""
    conn.execute(
        "UPDATE import_stage SET props = (props - 'other_tags') || coalesce((props->>'other_tags')::jsonb, '{}') "
        "WHERE props ? 'other_tags'"
    )


