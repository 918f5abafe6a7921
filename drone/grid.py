"""The common pixel grid both epochs are read onto, and readers that warp a raster onto it.

The grid uses the before epoch's CRS and pixel alignment; each epoch is read through a GDAL
WarpedVRT, so a different CRS or GSD and the registration correction cost one resampling only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform, transform_bounds

from drone.errors import NoOverlapError, NotGeoreferencedError


@dataclass(frozen=True)
class Grid:
    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def pixel_size(self) -> float:
        return self.transform.a

    def coarsened(self, pixel_size: float) -> Grid:
        """Same origin and (rounded-down) extent with bigger pixels."""
        factor = pixel_size / self.pixel_size
        t = self.transform
        return Grid(self.crs, Affine(pixel_size, 0, t.c, 0, -pixel_size, t.f),
                    int(self.width // factor), int(self.height // factor))


def require_georeferenced(src: rasterio.DatasetReader, role: str) -> None:
    if src.crs is None or src.transform == Affine.identity():
        raise NotGeoreferencedError(f"{role} raster {src.name} has no CRS or geotransform")
    if src.transform.b or src.transform.d:
        raise NotGeoreferencedError(f"{role} raster {src.name} is rotated; orthophotos must be north-up")


def gsd_in(src: rasterio.DatasetReader, crs: CRS) -> float:
    """The source's pixel size expressed in metres of `crs`, measured at the raster centre."""
    if src.crs == crs:
        return abs(src.transform.a)
    cx, cy = src.transform @ (src.width / 2, src.height / 2)
    xs, ys = transform(src.crs, crs, [cx, cx + src.transform.a], [cy, cy])
    return float(np.hypot(xs[1] - xs[0], ys[1] - ys[0]))


def common_grid(before: rasterio.DatasetReader, after: rasterio.DatasetReader) -> Grid:
    """Before's CRS and alignment, the coarser of the two GSDs, cropped to the shared footprint."""
    require_georeferenced(before, "before")
    require_georeferenced(after, "after")
    pixel = max(abs(before.transform.a), gsd_in(after, before.crs))
    left, bottom, right, top = before.bounds
    a_left, a_bottom, a_right, a_top = transform_bounds(after.crs, before.crs, *after.bounds)
    left, right = max(left, a_left), min(right, a_right)
    bottom, top = max(bottom, a_bottom), min(top, a_top)
    if right - left < 64 * pixel or top - bottom < 64 * pixel:
        raise NoOverlapError("the before and after rasters do not overlap (or share less than 64 px)")
    bt = before.transform
    col0 = np.ceil((left - bt.c) / bt.a - 1e-6)  # snap to before's pixel edges
    row0 = np.ceil((bt.f - top) / -bt.e - 1e-6)
    origin_x, origin_y = bt.c + col0 * bt.a, bt.f + row0 * bt.e
    return Grid(before.crs, Affine(pixel, 0, origin_x, 0, -pixel, origin_y),
                int((right - origin_x) // pixel), int((origin_y - bottom) // pixel))


def grid_to_source_affine(grid: Grid, src_crs: CRS) -> Affine:
    """Affine from grid pixels to `src_crs` world coordinates (exact for one CRS, a local fit otherwise)."""
    if src_crs == grid.crs:
        return grid.transform
    cols = np.array([0, grid.width, 0, grid.width], float)
    rows = np.array([0, 0, grid.height, grid.height], float)
    gx, gy = grid.transform @ (cols, rows)
    sx, sy = transform(grid.crs, src_crs, list(gx), list(gy))
    design = np.column_stack([cols, rows, np.ones(4)])
    (a, b, c), *_ = np.linalg.lstsq(design, np.asarray(sx), rcond=None)
    (d, e, f), *_ = np.linalg.lstsq(design, np.asarray(sy), rcond=None)
    return Affine(a, b, c, d, e, f)


def warped(src: rasterio.DatasetReader, grid: Grid, correction: Affine = Affine.identity(),
           resampling: Resampling = Resampling.bilinear) -> WarpedVRT:
    """`src` seen on `grid`; `correction` is a world affine applied to the source's georeference."""
    if src.count == 1:  # a DSM: float with NaN wherever there is no height
        return WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                         src_transform=correction @ src.transform, resampling=resampling,
                         src_nodata=src.nodata, nodata=np.nan, dtype="float32")
    # RGB: an alpha band (the source's own, or one added) marks pixels outside the source footprint
    return WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                     src_transform=correction @ src.transform, resampling=resampling, add_alpha=src.count == 3)
