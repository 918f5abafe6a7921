"""Orthophoto ingest: validate a raster, write its two Cloud-Optimized GeoTIFFs, catalogue it.

Every raster gets two renditions, both written by rio-cogeo:
- the analysis COG: lossless DEFLATE in the source CRS, what change detection reads (the pixels as
  the photogrammetry delivered them, not after a second resampling);
- the display COG: reprojected onto the WebMercatorQuad grid (`web_optimized`) with 256 px blocks,
  one block per web tile, and overviews down to the city's zoom; RGB as JPEG with an internal
  mask. Tiles are read from it: a web tile is one block read, no warping, ~20x fewer bytes.

The COGs are written under a staging folder and renamed into the managed folder only once their
catalogue row is written, inside that row's transaction: a failure at any step leaves neither a
file nor a row behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import morecantile
import numpy as np
import psycopg
import rasterio
from pyproj import Geod
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_geom
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from rio_cogeo.utils import get_zooms, has_alpha_band, has_mask_band, non_alpha_indexes
from shapely import segmentize
from shapely.geometry import box, mapping

from drone.errors import InvalidRasterError, NotGeoreferencedError
from drone.grid import require_georeferenced
from drone.radiometry import dn_scale
from drone.settings import DroneSettings
from gis import orthophotos
from gis.orthophotos import KINDS, managed_dir
from gis.settings import Settings, settings_of
from gis.crs import STORAGE_SRID

__all__ = ["KINDS", "managed_dir", "ingest_orthophoto", "replace_orthophoto", "delete_orthophoto",
           "make_display_rendition", "staged_cog", "inspect_raster"]

BAND_COUNTS = {"rgb": (3, 4), "dsm": (1,), "change": (1, 2)}  # rgb may carry an alpha band
MIN_GSD_M = 0.01
MAX_GSD_M = 10.0  # drone imagery is 1 cm - 1 m; up to 10 m lets real satellite test scenes through
DISPLAY_PERCENTILES = (2, 98)
DISPLAY_SAMPLE_PX = 1024
CATALOGUE_CRS = f"EPSG:{STORAGE_SRID}"
DISPLAY_TMS = morecantile.tms.get("WebMercatorQuad")
DISPLAY_TILE_PX = 256
TRANSLATE_CACHE_BYTES = 256 * 2**20  # rasterio reads an int GDAL_CACHEMAX as bytes
UNREADABLE = (RasterioError, OSError)  # a raster cut short or corrupt (rasterio's RasterioIOError is both)


@dataclass(frozen=True)
class RasterFacts:
    width: int
    height: int
    band_count: int
    gsd_m: float
    source_crs: str
    footprint_4490: dict  # GeoJSON polygon


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
    """The two renditions of a raster written under the staging folder, waiting for a catalogue row.
    `prefix` names the files after their writer (a job's files are swept with it if it dies)."""

    def __init__(self, settings: Settings, kind: str, facts: RasterFacts, prefix: str = ""):
        stem = f"{prefix}{kind}-{uuid.uuid4().hex}"
        staging, folder = orthophotos.staging_dir(settings), orthophotos.managed_dir(settings)
        self.partial, self.final = staging / f"{stem}.tif", folder / f"{stem}.tif"
        self.display_partial, self.display_final = staging / f"{stem}-display.tif", folder / f"{stem}-display.tif"
        self.kind, self.facts = kind, facts
        self.display: dict | None = None

    def catalogue(self, conn: psycopg.Connection, *, name: str, captured_on: date | None = None) -> dict:
        """Insert the row and move the files into place; call inside the caller's transaction, last."""
        f = self.facts
        row = orthophotos.insert(conn, name=name, kind=self.kind, captured_on=captured_on, gsd_m=f.gsd_m,
                                 width=f.width, height=f.height, band_count=f.band_count, source_crs=f.source_crs,
                                 footprint=f.footprint_4490, file_path=self.final,
                                 file_bytes=self.partial.stat().st_size, display_range=self._display_range(),
                                 display=self._display_columns())
        self._move_into_place()
        return row

    def replace(self, conn: psycopg.Connection, orthophoto_id: int) -> tuple[dict, dict]:
        """Put these files in place of an orthophoto's image (same id); returns (old row, new row)."""
        f = self.facts
        old, new = orthophotos.replace_image(
            conn, orthophoto_id, gsd_m=f.gsd_m, width=f.width, height=f.height, band_count=f.band_count,
            source_crs=f.source_crs, footprint=f.footprint_4490, file_path=self.final,
            file_bytes=self.partial.stat().st_size, display_range=self._display_range(),
            display=self._display_columns())
        self._move_into_place()
        return old, new

    def _display_range(self) -> tuple[float | None, float | None]:
        return _display_range(self.partial) if self.kind != "rgb" else (None, None)

    def _display_columns(self) -> dict:
        return {**self.display, "display_path": self.display_final,
                "display_bytes": self.display_partial.stat().st_size}

    def _move_into_place(self) -> None:
        os.replace(self.partial, self.final)
        os.replace(self.display_partial, self.display_final)

    def discard(self) -> None:
        for path in (self.partial, self.final, self.display_partial, self.display_final):
            path.unlink(missing_ok=True)


@contextmanager
def staged_cog(settings: Settings, source: str | os.PathLike, kind: str,
               progress: Callable[[str], None] | None = None, prefix: str = "") -> Iterator[StagedCog]:
    """Validate `source` and write its analysis and display COGs under staging.

    Use as `with staged_cog(...) as cog, conn.transaction(): cog.catalogue(conn, ...)`: the
    transaction commits first, then this context exits; on any failure (the commit's included)
    neither the staged nor the renamed files survive."""
    facts = inspect_raster(source, kind)
    cog = StagedCog(settings, kind, facts, prefix)
    try:
        if progress:
            progress("writing the analysis COG (lossless, source CRS)")
        _write_cog(source, cog.partial, kind)
        if progress:
            progress("writing the display COG (WebMercatorQuad)")
        cog.display = write_display_cog(cog.partial, cog.display_partial, kind)
        if progress:
            progress("cataloguing")
        yield cog
    except BaseException:
        cog.discard()
        raise
    finally:
        cog.partial.unlink(missing_ok=True)
        cog.display_partial.unlink(missing_ok=True)


def ingest_orthophoto(conn: psycopg.Connection, settings: Settings, source: str | os.PathLike, *, kind: str,
                      name: str, captured_on: date | None = None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Validate, convert to COGs and catalogue `source` in one transaction; returns the catalogue row."""
    with staged_cog(settings, source, kind, progress) as cog, conn.transaction():
        return cog.catalogue(conn, name=name, captured_on=captured_on)


def replace_orthophoto(conn: psycopg.Connection, settings: Settings, orthophoto_id: int,
                       source: str | os.PathLike, progress: Callable[[str], None] | None = None) -> dict:
    """Replace orthophoto `orthophoto_id`'s image by `source` (same kind); its old files go once the
    new row is committed, and every cached tile of it is dropped through the change feed."""
    kind = orthophotos.get(conn, orthophoto_id)["kind"]
    with staged_cog(settings, source, kind, progress) as cog, conn.transaction():
        old, new = cog.replace(conn, orthophoto_id)
    _remove_files(old)
    return new


def delete_orthophoto(conn: psycopg.Connection, orthophoto_id: int) -> dict:
    """Remove an orthophoto from the catalogue, then its files."""
    with conn.transaction():
        old = orthophotos.delete(conn, orthophoto_id)
    _remove_files(old)
    return old


def make_display_rendition(conn: psycopg.Connection, settings: Settings, orthophoto_id: int) -> dict:
    """(Re)write an orthophoto's display COG from its analysis COG; returns the new display columns."""
    row = orthophotos.get(conn, orthophoto_id)
    target = orthophotos.managed_dir(settings) / f"{row['kind']}-{uuid.uuid4().hex}-display.tif"
    partial = orthophotos.staging_dir(settings) / target.name
    try:
        display = write_display_cog(row["file_path"], partial, row["kind"])
        display.update(display_path=target, display_bytes=partial.stat().st_size)
        with conn.transaction():
            old = orthophotos.set_display(conn, orthophoto_id, display)
            os.replace(partial, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        partial.unlink(missing_ok=True)
    if old["display_path"]:
        Path(old["display_path"]).unlink(missing_ok=True)
    return display


def _remove_files(row: dict) -> None:
    for key in ("file_path", "display_path"):
        if row[key]:
            Path(row[key]).unlink(missing_ok=True)


def _refuse_cut_directories(src: rasterio.io.DatasetReader) -> None:
    """RasterioIOError if the file is cut inside its chain of directories (overviews, masks).

    Such a file opens; GDAL meets the cut when it first scans the chain and leaves the error for
    the next call that checks for one. rasterio 1.4 raises it from its metadata properties
    (`colorinterp`, which rio-tiler's and rio-cogeo's alpha checks read) as a class of its private
    `rasterio._err`, but from its reads, `checksum` included, as the public RasterioIOError. So the
    chain is scanned here (`overviews`) and the one-pixel checksum that follows raises the cut."""
    src.overviews(1)
    src.checksum(1, window=Window(0, 0, 1, 1))


def _write_cog(source, target: Path, kind: str) -> None:
    profile = cog_profiles.get("deflate") | {"blockxsize": 512, "blockysize": 512}
    if kind != "rgb":
        profile["predictor"] = 3  # floating-point predictor: heights and scores compress 2-3x better
    try:
        with rasterio.open(source) as src:
            _refuse_cut_directories(src)
            # A source that does not say which pixels are valid gets an internal mask saying "all of them"
            # (it compresses to nothing): the display COG's reprojection then masks what lies outside.
            add_mask = src.nodata is None and not has_alpha_band(src) and not has_mask_band(src)
    except UNREADABLE as exc:  # a file cut inside its overviews' directories fails here, not at open
        raise _cut_short(exc) from None
    _translate(source, target, profile, add_mask=add_mask, overview_resampling="average",
               config={"GDAL_NUM_THREADS": "2", "GDAL_TIFF_OVR_BLOCKSIZE": "512"})


def write_display_cog(source, target: Path, kind: str) -> dict:
    """The display rendition: reprojected onto the WebMercatorQuad grid at the zoom matching the
    source's resolution, 256 px blocks one per tile, overviews down to the city's zoom; RGB as
    JPEG with an internal mask (transparent outside the image), heights and scores lossless.
    Returns its zoom range as catalogue columns."""
    settings = settings_of(DroneSettings)
    with rasterio.open(source) as src:
        deeper = kind == "rgb" and src.dtypes[0] != "uint8"
    if deeper:  # JPEG takes 8 bits: a 16-bit or float orthophoto is shown from an 8-bit copy
        eight_bit = target.with_name(f"{target.stem}-8bit.tif")
        try:
            _eight_bit_copy(source, eight_bit)
            return write_display_cog(eight_bit, target, kind)
        finally:
            eight_bit.unlink(missing_ok=True)
    with rasterio.open(source) as src:
        minzoom, maxzoom = get_zooms(src, tilesize=DISPLAY_TILE_PX, tms=DISPLAY_TMS)
        rgb = kind == "rgb"
        if rgb:
            profile = cog_profiles.get("jpeg") | {"jpeg_quality": settings.rendition_jpeg_quality}
            indexes = list(non_alpha_indexes(src))[:3]
        else:
            profile = cog_profiles.get("deflate") | {"predictor": 3}
            indexes = None
        profile |= {"blockxsize": DISPLAY_TILE_PX, "blockysize": DISPLAY_TILE_PX}
        lowest = max(0, min(settings.rendition_city_zoom, maxzoom))
        levels = maxzoom - lowest
        # the display grid is about the source's own resolution: nearest keeps the pixels sharp (and
        # a score from being smeared across its 0.5 threshold); heights are smooth enough to blend
        resampling = "bilinear" if kind == "dsm" else "nearest"
        # rio-cogeo masks what falls outside the image only if the source says which pixels are
        # valid; an analysis COG written before it carried a mask gets an alpha band of "all valid"
        # (a second warp: slower, so only for those).
        unmasked = src.nodata is None and not has_alpha_band(src) and not has_mask_band(src)
        with WarpedVRT(src, add_alpha=True) if unmasked else nullcontext(src) as valid:
            _translate(valid, target, profile, indexes=indexes, add_mask=src.nodata is None,
                       tms=DISPLAY_TMS, zoom_level=maxzoom, overview_level=levels, resampling=resampling,
                       overview_resampling="nearest" if kind == "change" else "average",
                       config={"GDAL_NUM_THREADS": "2", "GDAL_TIFF_OVR_BLOCKSIZE": str(DISPLAY_TILE_PX)})
    return {"display_minzoom": lowest, "display_maxzoom": maxzoom}


def _eight_bit_copy(source, target: Path) -> None:
    """The orthophoto on the 8-bit scale detection compares it on (drone.radiometry.dn_scale), clipped
    to 0-255, with its mask or alpha; block by block, so any size fits in memory."""
    with rasterio.open(source) as src:
        scale = np.float32(dn_scale(src))
        alpha = has_alpha_band(src)
        profile = src.profile | dict(driver="GTiff", dtype="uint8", nodata=None, tiled=True, blockxsize=512,
                                     blockysize=512, compress="deflate", zlevel=1, predictor=1, photometric="RGB")
        profile.pop("alpha", None)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(target, "w", **profile) as dst:
            for _, window in dst.block_windows(1):
                data = src.read(window=window).astype(np.float32)
                data[:3] = np.clip(np.rint(data[:3] * scale), 0, 255)
                if alpha:
                    data[3] = np.where(data[3] > 0, 255, 0)
                dst.write(data.astype(np.uint8), window=window)
                if not alpha:
                    dst.write_mask(src.dataset_mask(window=window), window=window)


def _translate(source, target: Path, profile: dict, *, config: dict, **options) -> None:
    # a bounded block cache and a temporary file, not memory, whatever the raster's size
    config = {"GDAL_CACHEMAX": TRANSLATE_CACHE_BYTES, **config}
    try:
        cog_translate(source if isinstance(source, (rasterio.io.DatasetReader, WarpedVRT)) else str(source), str(target),
                      profile, in_memory=False, quiet=True, config=config, **options)
    except UNREADABLE as exc:
        raise _cut_short(exc) from None


def _cut_short(exc: BaseException) -> InvalidRasterError:
    return InvalidRasterError(f"the raster could not be read to its end (truncated or corrupt?): "
                              f"{_first_line(exc.__cause__ or exc)}")


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
