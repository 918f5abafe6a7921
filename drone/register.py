"""Co-registration of the after epoch onto the before epoch.

A coarse translation comes from phase correlation of a decimated central window (it absorbs GNSS
offsets of metres). Then a grid of tie windows is phase-correlated at full resolution with
sub-pixel upsampling, and a RANSAC similarity (shift, rotation, scale) is fitted; tie windows on
changed ground fall out as outliers. The fit is applied and the tie points re-measured until the
correction stops moving; the last re-measurement is the reported residual.

The result is a world affine on the after georeference, so it applies unchanged to the after
DSM and to any other product of the same flight.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from scipy import fft
from skimage.measure import ransac
from skimage.transform import SimilarityTransform

from drone.errors import RegistrationError
from drone.grid import Grid, grid_to_source_affine
from drone.ongrid import open_on_grid

MIN_TEXTURE_DN = 3.0  # grey std of a window below this carries no usable structure
MIN_NCC = 0.5  # normalised cross-correlation of an aligned tie window; below it the match is noise
MIN_TIES = 6
MAX_PASSES = 3
CONVERGED_PX = 0.05
FINAL_STEP_PX = 0.25  # a fitted step below this is applied without measuring the ties again
MAX_RESIDUAL_PX = 1.0
TIE_WORKERS = 2
COARSE_WINDOW = 2048
COARSE_SIDE = 512


@dataclass(frozen=True)
class RegistrationReport:
    correction: Affine  # corrected after georeference = correction @ after.transform (after CRS)
    residual_px: float  # RMS of re-measured tie displacements after correction, grid pixels
    residual_p95_px: float
    shift_px: tuple[float, float]  # how far the after georeference was off at the grid centre (x east, y south)
    rotation_deg: float  # counter-clockwise rotation of the correction
    scale: float
    tie_points: int
    inliers: int
    pixel_size_m: float


@dataclass
class _Ties:
    centres: np.ndarray  # (n, 2) grid pixel x, y
    displacement: np.ndarray  # (n, 2): before(p) matches the current after view at p + d


def register_pair(before: rasterio.DatasetReader, after: rasterio.DatasetReader, grid: Grid) -> RegistrationReport:
    """Estimate the correction that puts `after` onto `before` over `grid`; raise RegistrationError if unreliable."""
    before_view = _view(before, grid)
    to_after_world = grid_to_source_affine(grid, after.crs)
    # a whole-pixel coarse shift: the first pass then reads the after epoch with no resampling at all
    shift = np.round(_coarse_shift(before, after, grid))
    correction = _apply(Affine.identity(), Affine.translation(*shift), to_after_world)
    size = int(np.clip(min(grid.width, grid.height) // 6, 96, 384))
    centres = _tie_centres(grid, size)
    with ThreadPoolExecutor(TIE_WORKERS) as pool:  # reads are serialised per view; resampling and FFTs overlap
        before_tiles = list(pool.map(lambda c: _grey(before_view, _tie_window(c, size)), centres))  # never moves
        converged = False
        for _ in range(MAX_PASSES):
            ties = _measure(before_tiles, _view(after, grid, correction), centres, size, pool)
            model, inliers = _fit(ties)
            motion = _motion(model, grid)
            if motion < CONVERGED_PX:
                converged = True
                break
            correction = _apply(correction, model, to_after_world)
            if motion < FINAL_STEP_PX:
                # a last small step: applied, and the residual is the tie misfit to it (no re-measuring pass)
                ties = _Ties(ties.centres, ties.displacement - _model_shift(model, ties.centres))
                converged = True
                break
        if not converged:
            ties = _measure(before_tiles, _view(after, grid, correction), centres, size, pool)
            _, inliers = _fit(ties)
    before_view.close()
    misfit = np.hypot(*ties.displacement[inliers].T)
    residual = float(np.sqrt(np.mean(misfit**2)))
    if residual > MAX_RESIDUAL_PX:
        raise RegistrationError(f"residual misalignment {residual:.2f} px after correction exceeds {MAX_RESIDUAL_PX} px")
    centre = to_after_world @ (grid.width / 2, grid.height / 2)
    moved = correction @ centre
    return RegistrationReport(
        correction=correction, residual_px=residual, residual_p95_px=float(np.percentile(misfit, 95)),
        shift_px=((moved[0] - centre[0]) / grid.pixel_size, (centre[1] - moved[1]) / grid.pixel_size),
        rotation_deg=math.degrees(math.atan2(correction.d, correction.a)), scale=math.hypot(correction.a, correction.d),
        tie_points=len(ties.centres), inliers=int(inliers.sum()), pixel_size_m=grid.pixel_size)


def _apply(correction: Affine, model: Affine, to_after_world: Affine) -> Affine:
    """Fold a grid-pixel model (before(p) ~ view(model p)) into the world correction of the after georeference."""
    return to_after_world @ ~model @ ~to_after_world @ correction


def _view(src, grid: Grid, correction: Affine = Affine.identity()):
    """`src` on `grid`: plain windowed reads plus a cubic spline for the correction (GDAL cubic warp otherwise)."""
    return open_on_grid(src, grid, correction, order=3, fallback=Resampling.cubic)


def _grey(view, window: Window) -> tuple[np.ndarray, np.ndarray]:
    grey, ok = view.read(window, grey=True)
    return grey[0], ok


def _coarse_shift(before, after, grid: Grid) -> tuple[float, float]:
    """Translation (grid px) from a decimated central window; tolerates offsets up to ~1/4 of it."""
    side = min(COARSE_WINDOW, grid.width, grid.height)
    factor = max(1, side // COARSE_SIDE)
    coarse = grid.coarsened(grid.pixel_size * factor)  # box-averaged reads, no warp
    n = side // factor
    window = Window((coarse.width - n) // 2, (coarse.height - n) // 2, n, n)
    views = (open_on_grid(before, coarse, fallback=Resampling.average),
             open_on_grid(after, coarse, fallback=Resampling.average))
    try:
        (b, b_ok), (a, a_ok) = (_grey(v, window) for v in views)
    finally:
        for v in views:
            v.close()
    if not (b_ok.mean() > 0.5 and a_ok.mean() > 0.5):
        raise RegistrationError("the centre of the overlap holds no data in one of the epochs")
    if b.std() < MIN_TEXTURE_DN or a.std() < MIN_TEXTURE_DN:
        raise RegistrationError("too little texture to register (featureless or blank imagery)")
    d = _correlate(b, a, upsample=4)
    if d is None:
        raise RegistrationError("the epochs do not correlate: different places or too much change")
    return d[0] * factor, d[1] * factor


def _correlate(b: np.ndarray, a: np.ndarray, upsample: int) -> tuple[float, float] | None:
    """(dx, dy) with b(p) ~ a(p + d), or None when the aligned windows do not correlate."""
    hann = _hann(b.shape)
    dy, dx = -_phase_shift((b - b.mean()) * hann, (a - a.mean()) * hann, upsample)
    if _ncc(b, a, int(round(dx)), int(round(dy))) < MIN_NCC:
        return None
    return float(dx), float(dy)


def _phase_shift(reference: np.ndarray, moving: np.ndarray, upsample: int) -> np.ndarray:
    """skimage.registration.phase_cross_correlation(reference, moving, upsample_factor=upsample)[0].

    The same algorithm (phase-normalised cross-power spectrum, integer peak, then a matrix DFT
    upsampled around it; Guizar-Sicairos et al. 2008) in single precision with scipy.fft: the
    skimage version spends most of its time in complex128 tensordots.
    """
    spectrum = fft.fft2(reference.astype(np.float32)) * fft.fft2(moving.astype(np.float32)).conj()
    spectrum /= np.maximum(np.abs(spectrum), 100 * np.finfo(np.float32).eps)
    correlation = np.abs(fft.ifft2(spectrum))
    shape = np.array(correlation.shape)
    shifts = np.array(np.unravel_index(np.argmax(correlation), correlation.shape), float)
    shifts[shifts > shape // 2] -= shape[shifts > shape // 2]
    if upsample <= 1:
        return shifts
    shifts = np.round(shifts * upsample) / upsample
    region = int(math.ceil(upsample * 1.5))
    centre = np.fix(region / 2.0)
    offsets = centre - shifts * upsample
    kernels = [np.exp((-2j * np.pi) * ((np.arange(region) - off)[:, None] * np.fft.fftfreq(n, upsample)[None, :]))
               .astype(np.complex64) for n, off in zip(shape, offsets)]
    upsampled = kernels[0] @ spectrum.conj() @ kernels[1].T  # (region, region)
    peak = np.array(np.unravel_index(np.argmax(np.abs(upsampled)), upsampled.shape), float)
    return shifts + (peak - centre) / upsample


@lru_cache(maxsize=8)
def _hann(shape: tuple[int, int]) -> np.ndarray:
    """Taper so the window edges do not correlate as a strong artificial cross."""
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _ncc(b: np.ndarray, a: np.ndarray, dx: int, dy: int) -> float:
    h, w = b.shape
    if abs(dx) >= w // 2 or abs(dy) >= h // 2:
        return 0.0
    bb = b[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    aa = a[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    bb, aa = bb - bb.mean(), aa - aa.mean()
    return float((bb * aa).sum() / (np.sqrt((bb**2).sum() * (aa**2).sum()) + 1e-9))


def _tie_centres(grid: Grid, size: int) -> np.ndarray:
    n = int(np.clip(min(grid.width, grid.height) // (size * 1.5), 3, 5))
    xs = np.linspace(size, grid.width - size, n)
    ys = np.linspace(size, grid.height - size, n)
    return np.array([(x, y) for y in ys for x in xs])


def _tie_window(centre, size: int) -> Window:
    return Window(int(centre[0]) - size // 2, int(centre[1]) - size // 2, size, size)


def _measure(before_tiles: list, after_view, centres: np.ndarray, size: int, pool) -> _Ties:
    def one(centre, before_tile):
        b, b_ok = before_tile
        if not b_ok.all() or b.std() < MIN_TEXTURE_DN:
            return None
        a, a_ok = _grey(after_view, _tie_window(centre, size))
        if not a_ok.all():
            return None
        return _correlate(b, a, upsample=10)

    found, displacement = [], []
    for centre, d in zip(centres, pool.map(one, centres, before_tiles)):
        if d is not None:
            found.append(tuple(centre))
            displacement.append(d)
    after_view.close()
    if len(found) < MIN_TIES:
        raise RegistrationError(
            f"only {len(found)} of {len(centres)} tie windows matched (need {MIN_TIES}): too little texture, "
            "too little overlap or too much change")
    return _Ties(np.array(found, float), np.array(displacement, float))


def _fit(ties: _Ties) -> tuple[Affine, np.ndarray]:
    src, dst = ties.centres, ties.centres + ties.displacement
    model, inliers = ransac((src, dst), SimilarityTransform, min_samples=3, residual_threshold=1.0,
                            max_trials=500, rng=0)
    if model is None or inliers is None or inliers.sum() < max(MIN_TIES, len(src) // 2):
        raise RegistrationError("tie points disagree: no consistent shift/rotation/scale (too much change or distortion)")
    refined = SimilarityTransform.from_estimate(src[inliers], dst[inliers])  # least squares on all inliers
    m = refined.params if refined else model.params
    return Affine(*m[0], *m[1]), inliers


def _model_shift(model: Affine, points: np.ndarray) -> np.ndarray:
    """model(p) - p for each point: the displacement the model predicts."""
    x, y = points.T
    return np.column_stack([model.a * x + model.b * y + model.c - x, model.d * x + model.e * y + model.f - y])


def _motion(model: Affine, grid: Grid) -> float:
    corners = [(0, 0), (grid.width, 0), (0, grid.height), (grid.width, grid.height)]
    return max(math.dist(model @ c, c) for c in corners)
