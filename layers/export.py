"""Exporting a catalogue layer as GeoPackage, Shapefile (zipped), FlatGeobuf, GeoJSON or CSV.

Rows come from a server-side cursor in batches, so memory stays flat for millions of rows: binary
formats are written batch by batch through GDAL (pyogrio, append); GeoJSON and CSV are text the
database renders (ST_AsGeoJSON, COPY … CSV) and are streamed as they come.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyogrio.raw
from psycopg import sql
from pyproj import CRS
from pyproj.exceptions import CRSError

from gis.errors import InvalidInput
from gis.crs import STORAGE_SRID
from layers.catalogue import Layer

BATCH_ROWS = 50_000


@dataclass(frozen=True)
class Format:
    driver: str | None  # GDAL driver, or None for text the database renders
    extension: str
    media_type: str


FORMATS = {
    "gpkg": Format("GPKG", ".gpkg", "application/geopackage+sqlite3"),
    "shp": Format("ESRI Shapefile", ".zip", "application/zip"),
    "fgb": Format("FlatGeobuf", ".fgb", "application/flatgeobuf"),
    "geojson": Format(None, ".geojson", "application/geo+json"),
    "csv": Format(None, ".csv", "text/csv; charset=utf-8"),
}
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportRequest:
    layer: Layer
    format: str
    bbox: tuple[float, float, float, float] | None = None  # in EPSG:4490 lon/lat
    srid: int = STORAGE_SRID

    @property
    def spec(self) -> Format:
        return FORMATS[self.format]


def make_request(layer: Layer, fmt: str, bbox: str | None = None, crs: str | None = None) -> ExportRequest:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    box = None
    if bbox:
        try:
            box = tuple(float(v) for v in bbox.split(","))
        except ValueError:
            box = ()
        if len(box) != 4 or box[0] > box[2] or box[1] > box[3]:
            raise InvalidInput(f"bbox wants minlon,minlat,maxlon,maxlat, got {bbox!r}")
    srid = STORAGE_SRID
    if crs:
        try:
            srid = CRS.from_user_input(crs).to_epsg()
        except CRSError:
            srid = None
        if srid is None:
            raise InvalidInput(f"export --crs wants an EPSG system (e.g. EPSG:4490, EPSG:4548), got {crs!r}; "
                               "GCJ-02/BD-09 are never exported")
    return ExportRequest(layer, fmt, box, srid)


def _columns(layer: Layer) -> list[str]:
    return [layer.key, *(p for p in layer.properties if p != layer.key)]


def _select(request: ExportRequest, geometry: sql.Composable) -> sql.Composed:
    layer = request.layer
    conditions = [sql.SQL(layer.where)] if layer.where else []
    if request.bbox:
        conditions.append(sql.SQL("geom && ST_MakeEnvelope({}, {}, {}, {}, {})").format(*map(sql.Literal, (*request.bbox, STORAGE_SRID))))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    return sql.SQL("SELECT {cols}, {geom} FROM {rel}{where} ORDER BY {key}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, _columns(layer))),
        geom=geometry.format(srid=sql.Literal(request.srid)),
        rel=sql.Identifier(*layer.relation.split(".")), where=where, key=sql.Identifier(layer.key))


def _column_types(conn: psycopg.Connection, request: ExportRequest) -> dict[str, str]:
    query = _select(request, sql.SQL("NULL::bytea AS wkb")) + sql.SQL(" LIMIT 0")
    with conn.cursor() as cur:
        cur.execute(query)
        return {d.name: conn.adapters.types.get(d.type_code).name if conn.adapters.types.get(d.type_code) else "text"
                for d in cur.description}


def _field_array(values: list, pg_type: str) -> tuple[np.ndarray, np.ndarray | None]:
    missing = np.array([v is None for v in values], dtype=bool)
    if pg_type in ("int2", "int4", "int8"):
        return np.array([0 if v is None else v for v in values], dtype=np.int64), missing
    if pg_type in ("float4", "float8", "numeric"):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64), None
    if pg_type == "bool":
        return np.array([bool(v) for v in values], dtype=bool), missing
    return np.array([None if v is None else str(v) for v in values], dtype=object), None


def _write_gdal(conn: psycopg.Connection, request: ExportRequest, path: Path, progress: Progress) -> int:
    types = _column_types(conn, request)
    names = _columns(request.layer)
    geometry_type = request.layer.geometry_type if request.layer.geometry_type != "Geometry" else "Unknown"
    written = 0
    with conn.transaction(), conn.cursor(name="export_rows") as cur:
        cur.itersize = BATCH_ROWS
        cur.execute(_select(request, sql.SQL("ST_AsBinary(ST_Transform(geom, {srid})) AS wkb")))
        while batch := cur.fetchmany(BATCH_ROWS):
            arrays = [_field_array([row[n] for row in batch], types[n]) for n in names]
            pyogrio.raw.write(
                str(path), np.array([row["wkb"] for row in batch], dtype=object),
                field_data=[a for a, _ in arrays], fields=names,
                field_mask=[m if m is not None and m.any() else None for _, m in arrays],
                driver=request.spec.driver, geometry_type=geometry_type, crs=f"EPSG:{request.srid}",
                layer=request.layer.id, append=written > 0, encoding="UTF-8" if request.format == "shp" else None)
            written += len(batch)
            progress(len(batch))
    if written == 0:
        pyogrio.raw.write(str(path), np.array([], dtype=object), field_data=[np.array([], dtype=object) for _ in names],
                          fields=names, driver=request.spec.driver, geometry_type=geometry_type,
                          crs=f"EPSG:{request.srid}", layer=request.layer.id)
    return written


def geojson_chunks(conn: psycopg.Connection, request: ExportRequest, progress: Progress) -> Iterator[bytes]:
    crs = "" if request.srid in (4326, STORAGE_SRID) else \
        ', "crs": ' + json.dumps({"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{request.srid}"}})
    yield f'{{"type": "FeatureCollection", "name": "{request.layer.id}"{crs}, "features": [\n'.encode()
    query = sql.SQL("SELECT ST_AsGeoJSON(t.*, 'geom', 9)::text AS feature FROM ({}) t").format(
        _select(request, sql.SQL("ST_Transform(geom, {srid}) AS geom")))
    first = True
    with conn.transaction(), conn.cursor(name="export_geojson") as cur:
        cur.execute(query)
        while batch := cur.fetchmany(BATCH_ROWS):
            text = ",\n".join(row["feature"] for row in batch)
            yield (text if first else ",\n" + text).encode()
            first = False
            progress(len(batch))
    yield b"\n]}\n"


# A cell a spreadsheet would run as a formula (=cmd|…, +, -, @, or a leading tab/CR) gets a leading
# apostrophe, as OWASP advises against CSV injection; plain numbers such as -5 or +1e3 stay as they are.
FORMULA_START = re.compile(r"^[=+\-@\t\r]")
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
FORMULA_START_SQL = "^[=+\\-@\t\r]"
PLAIN_NUMBER_SQL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def spreadsheet_safe(value: Any) -> Any:
    """value, or text a spreadsheet shows instead of evaluating."""
    if isinstance(value, str) and FORMULA_START.match(value) and not PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def _spreadsheet_safe_sql(name: str) -> sql.Composable:
    cell = sql.SQL("s.{}::text").format(sql.Identifier(name))
    return sql.SQL("CASE WHEN {cell} ~ {start} AND {cell} !~ {number} THEN {quote} || {cell} ELSE {cell} END AS {name}").format(
        cell=cell, start=sql.Literal(FORMULA_START_SQL), number=sql.Literal(PLAIN_NUMBER_SQL), quote=sql.Literal("'"),
        name=sql.Identifier(name))


def csv_chunks(conn: psycopg.Connection, request: ExportRequest, progress: Progress) -> Iterator[bytes]:
    """CSV with the geometry as a `wkt` column (GDAL and the importer read it back); formula-safe cells."""
    inner = _select(request, sql.SQL("ST_AsText(ST_Transform(geom, {srid}), 9) AS wkt"))
    cells = sql.SQL(", ").join(_spreadsheet_safe_sql(name) for name in (*_columns(request.layer), "wkt"))
    query = sql.SQL("COPY (SELECT {} FROM ({}) s) TO STDOUT WITH (FORMAT csv, HEADER)").format(cells, inner)
    with conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            yield bytes(chunk)
            progress(bytes(chunk).count(b"\n"))


def export_to_file(conn: psycopg.Connection, request: ExportRequest, path: Path, progress: Progress | None = None) -> Path:
    """Write the layer to `path` (a Shapefile set is zipped into `path`)."""
    tell = progress or (lambda _: None)
    if request.spec.driver is None:
        chunks = geojson_chunks if request.format == "geojson" else csv_chunks
        with open(path, "wb") as out:
            for chunk in chunks(conn, request, tell):
                out.write(chunk)
        return path
    if request.format != "shp":
        path.unlink(missing_ok=True)
        _write_gdal(conn, request, path, tell)
        return path
    with tempfile.TemporaryDirectory(prefix="cityops-shp-") as folder:
        _write_gdal(conn, request, Path(folder) / f"{request.layer.id}.shp", tell)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in sorted(Path(folder).iterdir()):
                archive.write(part, part.name)
    return path


def count_rows(conn: psycopg.Connection, request: ExportRequest) -> int:
    query = sql.SQL("SELECT count(*) AS n FROM ({}) t").format(_select(request, sql.SQL("1 AS one")))
    return conn.execute(query).fetchone()["n"]


