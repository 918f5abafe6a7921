"""Reading a source raster onto an analysis grid without a GDAL warp.

When the source shares the grid's CRS and its pixel size divides the grid's by a whole factor k,
a grid window is read as plain windowed reads of the source (aligned to its own k x k lattice),
box-averaged by k in numpy (an RGB raster with internal overviews is read decimated by GDAL
instead, which decodes an overview rather than every full-resolution block), and only the small
remaining affine (the registration correction: sub-pixel shift, a fraction of a degree, scale
~1e-4) is applied at the grid's resolution by OpenCV's affine warp (cubic for RGB, bilinear for a
DSM). When the mapping is an exact whole-pixel offset (the before epoch on its own grid) no
interpolation happens at all. A DSM on a grid coarser by a fraction (0.2 m heights on a 0.5 m
registration level) is box-averaged by the whole part of the factor and warped for the rest.
Anything else (another CRS, an RGB GSD that is not a whole multiple) falls back to GDAL's WarpedVRT.

Both views return what the old WarpedVRT readers returned: RGB as (3, h, w) float32 plus a
validity mask, a DSM as (h, w) float32 with NaN where there is no height.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.windows import Window

from drone.grid import Grid, warped
from drone.imageops import erode
from drone.radiometry import dn_scale

MARGIN = 3  # lattice pixels read around the footprint, for the interpolation support
INTERPOLATION = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR, 3: cv2.INTER_CUBIC}


def _warp(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, int], order: int,
          border=cv2.BORDER_REPLICATE) -> np.ndarray:
    """Resample a 2-D array where output index (y, x) reads input index matrix @ (y, x) + offset (scipy's
    affine_transform convention) with OpenCV's warp: ~30x faster than scipy's spline on a near-identity map,
    and it releases the GIL, so both detection threads interpolate at once."""
    (ryy, ryx), (rxy, rxx) = matrix
    to_source = np.array([[rxx, rxy, offset[1]], [ryx, ryy, offset[0]]], np.float64)
    return cv2.warpAffine(image, to_source, (shape[1], shape[0]), flags=INTERPOLATION[order] | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)


def _box_sum(data: np.ndarray, k: int, dtype) -> np.ndarray:
    """Sum of each k x k cell of (bands, h*k, w*k): strided adds, ~100x faster than reshape().sum()."""
    rows = data[:, 0::k].astype(dtype)
    for i in range(1, k):
        rows += data[:, i::k]
    out = rows[:, :, 0::k].copy()
    for i in range(1, k):
        out += rows[:, :, i::k]
    return out


class _VrtView:
    thread_safe = False  # a WarpedVRT keeps per-handle warp state: one per thread

    def __init__(self, src, grid: Grid, correction: Affine, resampling: Resampling):
        self.vrt = warped(src, grid, correction, resampling)
        self.dsm = src.count == 1
        self.scale = 1.0 if self.dsm else dn_scale(src)
        self.lock = threading.Lock()  # a GDAL handle must not be read from two threads at once

    def read(self, window: Window, grey: bool = False):
        with self.lock:
            data = self.vrt.read(window=window)
        if self.dsm:
            return data[0], None
        rgb = data[:3].astype(np.float32) * np.float32(self.scale)
        return (rgb.mean(axis=0, keepdims=True) if grey else rgb), data[-1] > 0

    def close(self):
        self.vrt.close()


class _FastView:
    thread_safe = True  # reads hold the lock; everything else is pure numpy/scipy

    def __init__(self, src, grid: Grid, correction: Affine, k: int, order: int):
        self.src, self.k, self.dsm = src, k, src.count == 1
        self.lock = threading.Lock()  # a GDAL handle must not be read from two threads at once
        self.order = 1 if self.dsm else order  # cubic weights would smear NaN holes of a DSM wider
        self.alpha = src.count == 4
        self.scale = 1.0 if self.dsm else dn_scale(src)
        # box sums of k x k pixels: 8-bit ones fit 16 bits up to k = 16
        self.accumulator = np.uint16 if src.dtypes[0] == "uint8" and k <= 16 else (
            np.uint32 if np.issubdtype(src.dtypes[0], np.integer) else np.float32)
        # an ingested analysis COG is RGB with an internal mask (all valid, or transparent outside the flight),
        # or with the nodata value its source declared
        self.masked = src.count == 3 and _masked(src)
        # a coarse RGB level comes from the raster's own overviews (GDAL picks the nearest finer one and
        # averages it onto the lattice) instead of decoding full resolution to box-average it; kept out:
        # DSMs (a cell with a hole must stay NaN) and alpha (GDAL would weigh the colours by it). Under a
        # mask, a cell is valid where the mask's own overview averages to fully valid (read below).
        self.from_overviews = k > 1 and not self.dsm and not self.alpha and bool(src.overviews(1))
        m = ~(correction @ src.transform) @ grid.transform  # grid px -> source px (continuous)
        self.lattice = Affine.scale(1 / k) @ m  # grid px -> source k-lattice px
        self.lw, self.lh = src.width // k, src.height // k
        t = self.lattice
        self.exact = (abs(t.a - 1) < 1e-9 and abs(t.e - 1) < 1e-9 and abs(t.b) < 1e-12 and abs(t.d) < 1e-12
                      and abs(t.c - round(t.c)) < 1e-6 and abs(t.f - round(t.f)) < 1e-6)

    def _read_lattice(self, c0: int, r0: int, c1: int, r1: int):
        """Lattice cells [c0, c1) x [r0, r1), clipped to the source; returns data, valid and the clipped origin."""
        cc0, rr0, cc1, rr1 = max(c0, 0), max(r0, 0), min(c1, self.lw), min(r1, self.lh)
        bands = 1 if self.dsm else 3
        out = np.full((bands, r1 - r0, c1 - c0), np.nan if self.dsm else 0, np.float32)
        valid = np.zeros((r1 - r0, c1 - c0), bool)
        if cc1 <= cc0 or rr1 <= rr0:
            return out, valid
        k = self.k
        h, w = rr1 - rr0, cc1 - cc0
        window = Window(cc0 * k, rr0 * k, w * k, h * k)
        with self.lock:
            if self.from_overviews:
                data = self.src.read(window=window, out_shape=(self.src.count, h, w), out_dtype="float32",
                                     resampling=Resampling.average)
            else:
                data = self.src.read(window=window)
            mask = None
            if self.masked:  # decimated like the colours: decoding the whole full-resolution mask cost 3x the read
                mask = (self.src.dataset_mask(window=window, out_shape=(h, w), resampling=Resampling.average)
                        if self.from_overviews else self.src.dataset_mask(window=window))
        sub = (slice(None), slice(rr0 - r0, rr0 - r0 + h), slice(cc0 - c0, cc0 - c0 + w))
        if self.dsm:
            d = data.astype(np.float32)
            if self.src.nodata is not None:
                d[d == self.src.nodata] = np.nan
            out[sub] = _box_sum(d, k, np.float32) / (k * k) if k > 1 else d
            valid[sub[1:]] = True
            return out, valid
        rgb = data[:3]
        if self.from_overviews or k == 1:
            out[sub] = rgb
        else:
            out[sub] = _box_sum(rgb, k, self.accumulator) * np.float32(1 / (k * k))
        if self.scale != 1:
            out *= np.float32(self.scale)
        if self.from_overviews and self.masked:
            valid[sub[1:]] = mask == 255  # the average of a cell astride the flight's edge is partial
        elif self.alpha or self.masked:
            a = (data[3] if self.alpha else mask) > 0
            valid[sub[1:]] = _box_sum(a[None], k, np.uint16 if k <= 16 else np.uint32)[0] == k * k if k > 1 else a
        else:
            valid[sub[1:]] = True
        return out, valid

    def read(self, window: Window, grey: bool = False):
        """(bands, h, w) float32 and validity; `grey` averages the RGB bands first (one band to resample)."""
        col, row, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        t = self.lattice
        if self.exact:
            out, valid = self._read_lattice(col + round(t.c), row + round(t.f), col + round(t.c) + w,
                                            row + round(t.f) + h)
            if grey and not self.dsm:
                out = out.mean(axis=0, keepdims=True)
        else:
            # lattice coordinates of every output pixel centre, as array indices (centre of index i is i + 0.5)
            xs = np.arange(w, dtype=np.float64) + col + 0.5
            ys = np.arange(h, dtype=np.float64) + row + 0.5
            corners_x = [t.a * x + t.b * y + t.c for x in (xs[0], xs[-1]) for y in (ys[0], ys[-1])]
            corners_y = [t.d * x + t.e * y + t.f for x in (xs[0], xs[-1]) for y in (ys[0], ys[-1])]
            c0, c1 = int(np.floor(min(corners_x))) - MARGIN, int(np.ceil(max(corners_x))) + MARGIN
            r0, r1 = int(np.floor(min(corners_y))) - MARGIN, int(np.ceil(max(corners_y))) + MARGIN
            lat, lat_valid = self._read_lattice(c0, r0, c1, r1)
            if grey and not self.dsm:
                lat = lat.mean(axis=0, keepdims=True)
            # output index (y, x) -> input index (row, col) of the lattice window
            matrix = np.array([[t.e, t.d], [t.b, t.a]])
            offset = np.array([t.d * (col + 0.5) + t.e * (row + 0.5) + t.f - 0.5 - r0,
                               t.a * (col + 0.5) + t.b * (row + 0.5) + t.c - 0.5 - c0])
            out = np.stack([_warp(band, matrix, offset, (h, w), self.order) for band in lat])
            # valid where the whole interpolation support is valid lattice data
            rows = [matrix[0] @ (y, x) + offset[0] for y in (0, h - 1) for x in (0, w - 1)]
            cols = [matrix[1] @ (y, x) + offset[1] for y in (0, h - 1) for x in (0, w - 1)]
            if lat_valid.all() and min(rows) >= 2 and min(cols) >= 2 and max(rows) <= lat.shape[1] - 3 \
                    and max(cols) <= lat.shape[2] - 3:
                valid = np.ones((h, w), bool)  # the usual case: every pixel's spline support is real data
            else:
                support = erode(lat_valid, iterations=2)
                valid = _warp(support.view(np.uint8), matrix, offset, (h, w), 0, cv2.BORDER_CONSTANT).astype(bool)
        if self.dsm:
            d = out[0]
            d[~valid] = np.nan
            return d, None
        return out, valid

    def close(self):
        pass


def _masked(src) -> bool:
    """RGB whose valid pixels GDAL's dataset mask tells: an internal mask (what ingest writes) or a nodata value."""
    return all(MaskFlags.per_dataset in f or MaskFlags.nodata in f for f in src.mask_flag_enums)


def open_on_grid(src: rasterio.DatasetReader, grid: Grid, correction: Affine = Affine.identity(), *,
                 order: int = 3, fallback: Resampling = Resampling.average):
    """A reader of `src` (corrected by the world affine `correction`) on `grid`; see the module docstring."""
    k = grid.pixel_size / abs(src.transform.a)
    whole = round(k)
    if src.count == 1 and k >= 1:  # a DSM: the fraction of the factor goes into the warp
        whole = k = int(k + 1e-6)
    flags = src.mask_flag_enums
    masks_ok = (src.count == 1
                or (src.count == 3 and (all(f == [MaskFlags.all_valid] for f in flags) or _masked(src)))
                or (src.count == 4 and all(MaskFlags.alpha in f or MaskFlags.per_dataset in f for f in flags[:3])))
    if (src.crs == grid.crs and whole >= 1 and abs(k - whole) < 1e-6 and abs(src.transform.e + src.transform.a) < 1e-9
            and not src.transform.b and not src.transform.d and masks_ok):
        return _FastView(src, grid, correction, whole, order)
    return _VrtView(src, grid, correction, fallback)
