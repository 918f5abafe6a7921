"""Reading a source file through GDAL (pyogrio): which layers, which CRS, and its rows in batches.

Batches come from `pyogrio.raw.open_arrow`, one dataset opened once and read forward, so memory is
bounded by the batch size and time stays linear for formats without random access (CSV, OSM, GeoJSONSeq).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyogrio
import pyogrio.raw
from pyogrio.errors import DataLayerError, DataSourceError

from gis.errors import InvalidInput
from gis.limits import LimitSettings
from gis.settings import settings_of

BATCH_ROWS = 50_000
# GDAL open options by file kind: CSV coordinates come from lon/lat or WKT columns; OSM tags as JSON.
CSV_OPTIONS = {
    "X_POSSIBLE_NAMES": "lon,lng,longitude,x,经度",
    "Y_POSSIBLE_NAMES": "lat,latitude,y,纬度",
    "GEOM_POSSIBLE_NAMES": "wkt,geom,geometry,the_geom",
    "KEEP_GEOM_COLUMNS": "NO",
}  # no AUTODETECT_TYPE: it turns 'on'/'off' into booleans; values stay text and SQL casts them per column
OSM_OPTIONS = {"TAGS_FORMAT": "JSON"}
# GDAL warns of odd rings as it reads; the importer checks every geometry itself and reports per row.
warnings.filterwarnings("ignore", message="(Non closed ring|organizePolygons)", category=RuntimeWarning)


@dataclass(frozen=True)
class SourceLayer:
    name: str
    crs: str | None
    geometry_type: str | None
    features: int | None  # None where the driver cannot tell without reading (OSM)


@dataclass(frozen=True)
class Source:
    path: str
    label: str
    driver: str
    open_options: dict[str, str]
    layers: tuple[SourceLayer, ...]

    @property
    def is_osm(self) -> bool:
        return self.driver == "OSM"

    @property
    def total_features(self) -> int | None:
        counts = [layer.features for layer in self.layers]
        return None if any(c is None for c in counts) else sum(counts)


def _gdal_path(path: Path) -> str:
    if path.suffix.lower() == ".zip":
        return f"/vsizip/{path}"
    return str(path)


def _open_options(path: Path) -> dict[str, str]:
    name = path.name.lower()
    if name.endswith(".csv"):
        return CSV_OPTIONS
    if name.endswith((".pbf", ".osm")):
        return OSM_OPTIONS
    return {}


def open_source(path: Path, wanted_layers: list[str], where: str | None = None) -> Source:
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    _check_expansion(path)
    gdal_path, options = _gdal_path(path), _open_options(path)
    try:
        available = [str(name) for name, _ in pyogrio.list_layers(gdal_path)]
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise InvalidInput(f"cannot read {path.name}: {_first_line(exc)}") from exc
    if not available:
        raise InvalidInput(f"{path.name} holds no vector layer")
    names = [n for n in wanted_layers if n in available] or available[:1]
    layers = []
    for name in names:
        try:
            info = pyogrio.read_info(gdal_path, layer=name, force_feature_count=True, **options)
        except (DataSourceError, DataLayerError) as exc:
            raise InvalidInput(f"cannot read layer {name!r} of {path.name}: {_first_line(exc)}") from exc
        count = int(info["features"])
        if where:
            count = -1  # an attribute filter changes the count; progress shows rows read instead
        layers.append(SourceLayer(name, info["crs"], info["geometry_type"], count if count >= 0 else None))
    source = Source(gdal_path, path.name, info["driver"], options, tuple(layers))
    limit = settings_of(LimitSettings).import_max_rows
    if source.total_features is not None and source.total_features > limit:
        raise InvalidInput(f"{path.name} holds {source.total_features:,} features; one import takes at most "
                           f"{limit:,} (CITYOPS_IMPORT_MAX_ROWS); split it; nothing was imported")
    return source


def _check_expansion(path: Path) -> None:
    """A zip that expands past the limit (a zip bomb: 0.56 MB held 10 M rows) is refused unread."""
    if path.suffix.lower() != ".zip":
        return
    limit_mb = settings_of(LimitSettings).import_max_uncompressed_mb
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"{path.name} is not a readable zip: {exc}") from None
    if expanded > limit_mb * 1024 * 1024:
        raise InvalidInput(f"{path.name} expands to {expanded / 2**20:,.0f} MB; the limit is {limit_mb:,} MB "
                           "(CITYOPS_IMPORT_MAX_UNCOMPRESSED_MB); nothing was imported")


@contextmanager
def record_batches(source: Source, layer: SourceLayer, where: str | None,
                   batch_rows: int = BATCH_ROWS) -> Iterator[tuple[str, Iterator[pa.RecordBatch]]]:
    """Yields (geometry column name, batches). GDAL errors mid-file (a truncated file) become InvalidInput."""
    try:
        with pyogrio.raw.open_arrow(source.path, layer=layer.name, where=where, batch_size=batch_rows,
                                    use_pyarrow=True, **source.open_options) as (meta, reader):
            yield meta["geometry_name"] or "wkb_geometry", _guarded(reader, source)
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(f"cannot read {source.label}: {_first_line(exc)}") from exc


def _guarded(reader, source: Source) -> Iterator[pa.RecordBatch]:
    """The batches, stopped with a reason past the row limit (formats that cannot count ahead, OSM)."""
    limit, rows = settings_of(LimitSettings).import_max_rows, 0
    try:
        for batch in reader:
            rows += batch.num_rows
            if rows > limit:
                raise InvalidInput(f"{source.label} holds more than {limit:,} features; one import takes at most "
                                   f"{limit:,} (CITYOPS_IMPORT_MAX_ROWS); split it; nothing was imported")
            yield batch
    except (OSError, pa.ArrowException, DataSourceError) as exc:
        raise InvalidInput(f"{source.label} is damaged or truncated: {_first_line(exc)}; nothing was imported") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
