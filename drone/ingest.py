"""Orthophoto ingest: validate a raster, convert it to a Cloud-Optimized GeoTIFF, catalogue it.

The COG is written under a staging folder and renamed into the managed folder only once its
catalogue row is inserted, inside that row's transaction: a failure at any step leaves neither a
file nor a row behind.

The source CRS is kept (no `web_optimized` reprojection to Web Mercator): titiler reprojects
tiles on the fly, and change detection must read the pixels as the photogrammetry delivered
them rather than after a second resampling.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
import rasterio
from pyproj import Geod
from rasterio.errors import RasterioError
from rasterio.warp import transform_geom
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from shapely import segmentize
from shapely.geometry import box, mapping

from drone.errors import InvalidRasterError, NotGeoreferencedError
from drone.grid import require_georeferenced
from gis.settings import Settings
from gis.crs import STORAGE_SRID

KINDS = ("rgb", "dsm", "change")
BAND_COUNTS = {"rgb": (3, 4), "dsm": (1,), "change": (1, 2)}  # rgb may carry an alpha band
MIN_GSD_M = 0.01
MAX_GSD_M = 10.0  # drone imagery is 1 cm - 1 m; up to 10 m lets real satellite test scenes through
DISPLAY_PERCENTILES = (2, 98)
DISPLAY_SAMPLE_PX = 1024
CATALOGUE_CRS = f"EPSG:{STORAGE_SRID}"

# ST_AsGeoJSON's options 0: no "crs" member inside the geometry (RFC 7946 has none).
ORTHOPHOTO_COLUMNS = ("id, name, kind, captured_on, gsd_m, width, height, band_count, source_crs, file_path, "
                      "file_bytes, display_min, display_max, created_at, ST_AsGeoJSON(geom, 9, 0)::json AS footprint")


@dataclass(frozen=True)
class RasterFacts:
    width: int
    height: int
    band_count: int
    gsd_m: float
    source_crs: str
    footprint_4490: dict  # GeoJSON polygon


def managed_dir(settings: Settings) -> Path:
    return settings.state_dir / "orthophotos"


def inspect_raster(path: str | os.PathLike, kind: str) -> RasterFacts:
    """Everything that must hold before conversion; raises InvalidRasterError / NotGeoreferencedError."""
    if kind not in KINDS:
        raise InvalidRasterError(f"unknown orthophoto kind {kind!r}; kinds are {', '.join(KINDS)}")
    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        raise InvalidRasterError(f"not a raster GDAL can read: {_first_line(exc)}") from None
    with src:
        require_georeferenced(src, kind)
        try:
            outline = box(*src.bounds)  # densified: the edges of a projected rectangle curve in degrees
            outline = segmentize(outline, max(src.bounds.right - src.bounds.left, src.bounds.top - src.bounds.bottom) / 4)
            footprint = transform_geom(src.crs, CATALOGUE_CRS, mapping(outline))
        except RasterioError as exc:
            raise NotGeoreferencedError(f"the raster's CRS cannot be placed on CGCS2000: {_first_line(exc)}") from None
        gsd = _gsd_m(src)
        if not MIN_GSD_M <= gsd <= MAX_GSD_M:
            raise InvalidRasterError(f"ground sample distance {gsd:.3g} m is outside {MIN_GSD_M}-{MAX_GSD_M} m "
                                     "expected of drone orthophotos")
        if src.count not in BAND_COUNTS[kind]:
            wanted = " or ".join(map(str, BAND_COUNTS[kind]))
            raise InvalidRasterError(f"a {kind} raster needs {wanted} band(s); this one has {src.count}")
        epsg = src.crs.to_epsg()
        return RasterFacts(src.width, src.height, src.count, gsd, f"EPSG:{epsg}" if epsg else src.crs.to_wkt(),
                           footprint)


class StagedCog:
    """A COG written under the staging folder, waiting for its catalogue row."""

    def __init__(self, partial: Path, final: Path, kind: str, facts: RasterFacts):
        self.partial, self.final, self.kind, self.facts = partial, final, kind, facts

    def catalogue(self, conn: psycopg.Connection, *, name: str, captured_on: date | None = None) -> dict:
        """Insert the row and move the file into place; call inside the caller's transaction, last."""
        display = _display_range(self.partial) if self.kind != "rgb" else (None, None)
        f = self.facts
        row = conn.execute(
            f"INSERT INTO city.orthophoto (name, kind, captured_on, gsd_m, width, height, band_count, source_crs, "
            f"file_path, file_bytes, display_min, display_max, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
            f"%s, %s, %s, ST_SetSRID(ST_GeomFromGeoJSON(%s), {STORAGE_SRID})) RETURNING {ORTHOPHOTO_COLUMNS}",
            [name, self.kind, captured_on, f.gsd_m, f.width, f.height, f.band_count, f.source_crs, str(self.final),
             self.partial.stat().st_size, *display, json.dumps(f.footprint_4490)],
        ).fetchone()
        os.replace(self.partial, self.final)
        return row


@contextmanager
def staged_cog(settings: Settings, source: str | os.PathLike, kind: str,
               progress: Callable[[str], None] | None = None) -> Iterator[StagedCog]:
    """Validate `source` and write it as a COG under staging.

    Use as `with staged_cog(...) as cog, conn.transaction(): cog.catalogue(conn, ...)`: the
    transaction commits first, then this context exits; on any failure (the commit's included)
    neither the staged nor the renamed file survives."""
    facts = inspect_raster(source, kind)
    folder = managed_dir(settings)
    staging = folder / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{uuid.uuid4().hex}"
    cog = StagedCog(staging / f"{stem}.tif", folder / f"{stem}.tif", kind, facts)
    try:
        if progress:
            progress("writing a Cloud-Optimized GeoTIFF")
        _write_cog(source, cog.partial, kind)
        if progress:
            progress("cataloguing")
        yield cog
    except BaseException:
        cog.final.unlink(missing_ok=True)
        raise
    finally:
        cog.partial.unlink(missing_ok=True)


def ingest_orthophoto(conn: psycopg.Connection, settings: Settings, source: str | os.PathLike, *, kind: str,
                      name: str, captured_on: date | None = None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Validate, convert to COG and catalogue `source` in one transaction; returns the catalogue row."""
    with staged_cog(settings, source, kind, progress) as cog, conn.transaction():
        return cog.catalogue(conn, name=name, captured_on=captured_on)


def _write_cog(source, target: Path, kind: str) -> None:
    profile = cog_profiles.get("deflate") | {"blockxsize": 512, "blockysize": 512}
    if kind != "rgb":
        profile["predictor"] = 3  # floating-point predictor: heights and scores compress 2-3x better
    try:
        cog_translate(str(source), str(target), profile, overview_resampling="average",
                      config={"GDAL_NUM_THREADS": "2", "GDAL_TIFF_OVR_BLOCKSIZE": "512"}, quiet=True)
    except (RasterioError, OSError) as exc:
        raise InvalidRasterError(f"the raster could not be read to its end (truncated or corrupt?): "
                                 f"{_first_line(exc.__cause__ or exc)}") from None


def _display_range(cog: Path) -> tuple[float | None, float | None]:
    """Robust min/max of band 1 from a decimated read (an overview), to colour DSMs and change maps."""
    with rasterio.open(cog) as src:
        factor = max(1, max(src.width, src.height) // DISPLAY_SAMPLE_PX)
        values = src.read(1, out_shape=(max(1, src.height // factor), max(1, src.width // factor)), masked=True)
    values = values.compressed()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    low, high = (float(v) for v in np.percentile(values, DISPLAY_PERCENTILES))
    return (low, high) if low < high else (low, low + 1.0)


def _gsd_m(src: rasterio.DatasetReader) -> float:
    if src.crs.is_projected:
        return abs(src.transform.a) * src.crs.linear_units_factor[1]
    # geographic degrees: the geodesic length of one pixel's width at the raster centre
    lon, lat = src.transform @ (src.width / 2, src.height / 2)
    _, _, metres = Geod(ellps="GRS80").inv(lon, lat, lon + abs(src.transform.a), lat)
    return float(metres)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
