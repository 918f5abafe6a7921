"""Co-registration of the after epoch onto the before epoch, robust to light, season and GNSS error.

Registration works on what does not change with light: gradient-magnitude images (roof, road and
kerb edges; a gain, offset or white balance leaves their positions alone), and on the DSMs when
both epochs have one (heights are illumination-free). It runs coarse to fine:

1. an overview of the whole overlap (~512 px): phase correlation of the two gradient images gives
   the translation (GNSS offsets of metres are a few overview pixels);
2. at every level (overview, intermediate, full resolution) a grid of tie windows across the
   overlap is phase-correlated with sub-pixel upsampling and a RANSAC similarity (shift, rotation,
   scale) is fitted; windows on changed ground or moved shadows fall out as outliers;
3. at full resolution the fit is applied and the ties re-measured until the correction stops
   moving; the inliers' misfit is the reported residual.

A pair is refused only when it cannot be registered (under MIN_OVERLAP of shared footprint,
featureless, or tie points that agree on no similarity), and the refusal carries the evidence.
The result is a world affine on the after georeference, so it applies unchanged to the after DSM.
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
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from scipy import fft, ndimage
from skimage.measure import ransac
from skimage.transform import SimilarityTransform

from drone.errors import NoOverlapError, RegistrationError
from drone.grid import Grid, grid_to_source_affine
from drone.imageops import dilate, gaussian_gradient_magnitude
from drone.ongrid import open_on_grid

MIN_OVERLAP = 0.3  # shared share of the smaller footprint below which a pair is refused
MIN_EDGES = 0.02  # mean edge strength (share of a clear edge per pixel) below which an epoch is featureless
MIN_VALID = 0.7  # share of a tie window that must hold data in both epochs
MIN_TIES = 5
MIN_INLIER_SHARE = 0.25  # of the measured tie windows
OVERVIEW_SIDE = 512
LEVEL_STEP = 6  # decimation between successive levels
OVERVIEW_PEAKS = 4  # overview translations tried, strongest first
MAX_SHIFT_M = 10.0  # GNSS error of a drone flight without RTK is metres; a fit moving further is a false match
TIE_SIDE = {"overview": 96, "fine": 128}
TIES_PER_SIDE = {"overview": 8, "fine": 6}  # full resolution starts within a pixel: 36 windows pin a similarity
MAX_PASSES = 3
FINAL_STEP_PX = 0.25  # a fitted step below this is applied without measuring the ties again
MAX_RESIDUAL_PX = 0.75
TIE_WORKERS = 2
WHOLE_LEVEL_PX = 1024**2  # a coarse level up to this size is read once, not window by window


@dataclass(frozen=True)
class RegistrationReport:
    correction: Affine  # corrected after georeference = correction @ after.transform (after CRS)
    residual_px: float  # RMS of re-measured tie displacements after correction, grid pixels
    residual_p95_px: float
    shift_px: tuple[float, float]  # how far the after georeference was off at the grid centre (x east, y south)
    rotation_deg: float  # counter-clockwise rotation of the correction
    scale: float
    tie_points: int  # tie windows measured at full resolution
    inliers: int
    pixel_size_m: float
    overlap_share: float  # shared area / the smaller epoch's footprint
    source: str  # what the coarse levels registered on: "rgb+dsm" or "rgb"


@dataclass
class _Ties:
    centres: np.ndarray  # (n, 2) level pixel x, y
    displacement: np.ndarray  # (n, 2): before(p) matches the current after view at p + d


@dataclass(frozen=True)
class _Level:
    grid: Grid
    sources: list[tuple[rasterio.DatasetReader, rasterio.DatasetReader]]  # (before, after): RGB, then DSM
    name: str  # "overview" (coarse levels) or "fine" (full resolution): its tie window side and count


def overlap_share(before: rasterio.DatasetReader, after: rasterio.DatasetReader, grid: Grid) -> float:
    """Area of the analysis grid over the smaller of the two footprints (both in the before CRS)."""
    b = before.bounds
    a = transform_bounds(after.crs, before.crs, *after.bounds)
    smaller = min((b[2] - b[0]) * (b[3] - b[1]), (a[2] - a[0]) * (a[3] - a[1]))
    return grid.width * grid.height * grid.pixel_size**2 / smaller


def register_pair(before: rasterio.DatasetReader, after: rasterio.DatasetReader, grid: Grid,
                  before_dsm: rasterio.DatasetReader | None = None,
                  after_dsm: rasterio.DatasetReader | None = None) -> RegistrationReport:
    """Estimate the correction that puts `after` onto `before` over `grid`; raise RegistrationError if it cannot."""
    share = overlap_share(before, after, grid)
    if share < MIN_OVERLAP:
        raise NoOverlapError(f"the epochs share {share:.0%} of the smaller footprint (need {MIN_OVERLAP:.0%}): "
                             "too little overlap to register and compare")
    use_dsm = before_dsm is not None and after_dsm is not None
    # the coarse levels see RGB edges and DSM relief together; full resolution is the RGB's alone
    coarse = [(before, after)] + ([(before_dsm, after_dsm)] if use_dsm else [])
    to_after_world = grid_to_source_affine(grid, after.crs)
    factor = max(1, int(math.ceil(max(grid.width, grid.height) / OVERVIEW_SIDE)))
    evidence = f"overlap {share:.0%} of the smaller footprint"
    with ThreadPoolExecutor(TIE_WORKERS) as pool:
        overview = grid.coarsened(grid.pixel_size * factor)
        refusal = None
        # the strongest overview peak is usually the shift; when moved shadows and another season
        # make it a wrong one, the full-resolution consensus fails and the next peak is tried
        for correction in _overview_candidates(coarse, overview, grid_to_source_affine(overview, after.crs), evidence):
            try:
                correction, ties, inliers, model = _coarse_to_fine(before, after, coarse, grid, factor, correction,
                                                                   pool, evidence)
                break
            except RegistrationError as exc:
                refusal = refusal or exc
        else:
            raise refusal
    misfit = np.hypot(*(ties.displacement[inliers] - _model_shift(model, ties.centres[inliers])).T)
    residual = float(np.sqrt(np.mean(misfit**2)))
    if residual > MAX_RESIDUAL_PX:
        raise RegistrationError(f"residual misalignment {residual:.2f} px after correction exceeds "
                                f"{MAX_RESIDUAL_PX} px ({inliers.sum()} of {len(inliers)} tie points agree; {evidence})")
    centre = to_after_world @ (grid.width / 2, grid.height / 2)
    moved = correction @ centre
    return RegistrationReport(
        correction=correction, residual_px=residual, residual_p95_px=float(np.percentile(misfit, 95)),
        shift_px=((moved[0] - centre[0]) / grid.pixel_size, (centre[1] - moved[1]) / grid.pixel_size),
        rotation_deg=math.degrees(math.atan2(correction.d, correction.a)), scale=math.hypot(correction.a, correction.d),
        tie_points=len(ties.centres), inliers=int(inliers.sum()), pixel_size_m=grid.pixel_size,
        overlap_share=round(min(share, 1.0), 4), source="rgb+dsm" if use_dsm else "rgb")


def _coarse_to_fine(before, after, coarse: list, grid: Grid, factor: int, correction: Affine, pool, evidence: str):
    """Refine an overview shift level by level; the full-resolution fit must find its consensus or refuse."""
    while factor > 1:
        level = grid.coarsened(grid.pixel_size * factor)
        try:
            correction, *_ = _refine(_Level(level, coarse, "overview"), correction,
                                     grid_to_source_affine(level, after.crs), pool, evidence, passes=1)
        except RegistrationError:
            pass  # a small overlap holds few windows at a coarse level; the next level has more
        factor = factor // LEVEL_STEP if factor > LEVEL_STEP else 1
    found = _refine(_Level(grid, [(before, after)], "fine"), correction,
                    grid_to_source_affine(grid, after.crs), pool, evidence, passes=MAX_PASSES)
    centre = grid_to_source_affine(grid, after.crs) @ (grid.width / 2, grid.height / 2)
    moved = math.dist(found[0] @ centre, centre)
    if moved > MAX_SHIFT_M:
        raise RegistrationError(f"the only consistent fit moves the after epoch {moved:.0f} m (more than "
                                f"{MAX_SHIFT_M:.0f} m of GNSS error): repeated structure, not a match ({evidence})")
    return found


def _apply(correction: Affine, model: Affine, to_after_world: Affine) -> Affine:
    """Fold a grid-pixel model (before(p) ~ view(model p)) into the world correction of the after georeference."""
    return to_after_world @ ~model @ ~to_after_world @ correction


def _view(src, grid: Grid, correction: Affine = Affine.identity()):
    """`src` on `grid`: plain windowed reads plus a cubic spline for the correction (GDAL warp otherwise)."""
    return open_on_grid(src, grid, correction, order=3, fallback=Resampling.cubic if src.count > 1
                        else Resampling.bilinear)


class _WholeLevel:
    """A coarse level read in one piece, its tie windows served as slices: the half-overlapping windows
    cover it about 2.4 times, and one read (one spline, one warp) of a ~512 px level is cheaper than 64."""

    def __init__(self, view, grid: Grid):
        try:
            self.data, self.ok = view.read(Window(0, 0, grid.width, grid.height), grey=True)
        finally:
            view.close()

    def read(self, window: Window, grey: bool = True):
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        return self.data[..., rows, cols], None if self.ok is None else self.ok[rows, cols]

    def close(self):
        pass


def _level_view(src, level: _Level, correction: Affine = Affine.identity()):
    view = _view(src, level.grid, correction)
    small = level.grid.width * level.grid.height <= WHOLE_LEVEL_PX
    return _WholeLevel(view, level.grid) if level.name == "overview" and small else view


RGB_EDGE_DN = 20.0  # a clear RGB edge, DN per pixel
DSM_EDGE_M = 0.5  # a clear DSM edge (kerb, eave), metres per pixel
SHADOW_SHARE = 0.6  # grey below this share of the window's median is shadow


def _read(view, window: Window) -> tuple[np.ndarray, np.ndarray, bool]:
    """A window as one band (grey for RGB, heights for a DSM), its validity, and whether it is a DSM."""
    data, ok = view.read(window, grey=True)
    dsm = ok is None
    image = data if dsm else data[0]
    if dsm:  # NaN where there is no height
        ok = np.isfinite(image)
        image = np.where(ok, image, np.nanmedian(image) if ok.any() else 0)
    return image, ok, dsm


def _edges(image: np.ndarray, ok: np.ndarray, dsm: bool, without_shadows: bool = False) -> np.ndarray:
    """Gradient magnitude in units of a clear edge, zero where it cannot be trusted."""
    magnitude = gaussian_gradient_magnitude(image.astype(np.float32), 1.0)
    # walls of tall buildings would drown everything else: an edge counts once, however high
    magnitude = np.minimum(magnitude / (DSM_EDGE_M if dsm else RGB_EDGE_DN), 2.0)
    unusable = ~ok
    if without_shadows and not dsm and ok.any():
        # cast shadows all move together when the sun moves: their edges would register the sun, not the
        # ground, so edges next to clearly dark pixels do not count
        unusable = unusable | (image < SHADOW_SHARE * np.median(image[ok]))
    if unusable.any():
        magnitude[dilate(unusable, iterations=3)] = 0
    return magnitude


def _gradients(views: list, window: Window, variants: tuple[bool, ...] = (False,)) -> tuple[list, np.ndarray]:
    """Sum of the sources' edge images (RGB, DSM) on one window, one per shadow variant; valid where every source is."""
    totals, valid = [0.0] * len(variants), None
    for view in views:
        image, ok, dsm = _read(view, window)
        totals = [t + _edges(image, ok, dsm, v) for t, v in zip(totals, variants)]
        valid = ok if valid is None else valid & ok
    return totals, valid


def _overview_candidates(coarse: list, overview: Grid, to_after_world: Affine, evidence: str):
    """Overview translations to try: from the DSMs first when both epochs have one (16x fewer pixels
    than the RGB, and illumination-free), then from the RGB, which is only read if those all fail."""
    if len(coarse) > 1:
        try:
            yield from _overview_shifts(coarse[1:], overview, to_after_world, evidence)
        except RegistrationError:
            pass  # flat, featureless DSMs: the RGB below decides
    yield from _overview_shifts(coarse[:1], overview, to_after_world, evidence)


def _overview_shifts(sources: list, overview: Grid, to_after_world: Affine, evidence: str) -> list[Affine]:
    """Candidate translations, strongest first, from phase correlation of the whole overlap's edge overviews."""
    window = Window(0, 0, overview.width, overview.height)
    views = [[open_on_grid(src, overview, fallback=Resampling.average) for src in pair] for pair in sources]
    try:
        ((b, b_lit), b_ok), ((a, a_lit), a_ok) = (_gradients([v[i] for v in views], window, (False, True))
                                                  for i in (0, 1))
    finally:
        for pair in views:
            for v in pair:
                v.close()
    if b_ok.mean() < 0.3 or a_ok.mean() < 0.3:
        raise RegistrationError(f"one epoch holds data on under 30 % of the overlap ({evidence})")
    for name, g, ok in (("before", b, b_ok), ("after", a, a_ok)):
        if g[ok].mean() < MIN_EDGES:
            raise RegistrationError(f"the {name} epoch is featureless: too little texture or relief to register "
                                    f"(mean edge strength {g[ok].mean():.3f}, need {MIN_EDGES}; {evidence})")
    # all edges first; then lit edges only (when the sun moved, shadow edges agree on the sun's shift); then
    # the next peaks. The full-resolution consensus decides between them. Only shifts a GNSS error can make
    # are tried: rows of alike roofs correlate further away too, and often more strongly than the truth.
    reach = MAX_SHIFT_M / overview.pixel_size + 2
    tried = [_correlate(b, a, upsample=4), _correlate(b_lit, a_lit, upsample=4),
             *_peaks(b, a, OVERVIEW_PEAKS, reach), *_peaks(b_lit, a_lit, OVERVIEW_PEAKS, reach)]
    tried = [d for d in tried if math.hypot(*d) <= reach]
    distinct = [d for i, d in enumerate(tried) if all(math.dist(d, e) > 2 for e in tried[:i])]
    if not distinct:
        raise RegistrationError(f"no match within {MAX_SHIFT_M:.0f} m of GNSS error: different places or too much "
                                f"change ({evidence})")
    return [_apply(Affine.identity(), Affine.translation(*d), to_after_world) for d in distinct]


def _peaks(b: np.ndarray, a: np.ndarray, n: int, reach: float) -> list[tuple[float, float]]:
    """The n strongest local maxima of the phase correlation within `reach` pixels, as whole-pixel (dx, dy)
    with b(p) ~ a(p + d)."""
    hann = _hann(b.shape)
    spectrum = fft.fft2((b - b.mean()) * hann) * fft.fft2((a - a.mean()) * hann).conj()
    spectrum /= np.maximum(np.abs(spectrum), 1e-6)
    surface = np.abs(fft.ifft2(spectrum))
    rows, cols = np.nonzero(surface == ndimage.maximum_filter(surface, size=5, mode="wrap"))
    h, w = surface.shape
    dx, dy = -np.where(cols > w // 2, cols - w, cols), -np.where(rows > h // 2, rows - h, rows)
    near = np.hypot(dx, dy) <= reach
    order = np.argsort(surface[rows, cols][near])[::-1][:n]
    return [(float(x), float(y)) for x, y in zip(dx[near][order], dy[near][order])]


def _correlate(b: np.ndarray, a: np.ndarray, upsample: int) -> tuple[float, float]:
    """(dx, dy) with b(p) ~ a(p + d)."""
    hann = _hann(b.shape)
    dy, dx = -_phase_shift((b - b.mean()) * hann, (a - a.mean()) * hann, upsample)
    return float(dx), float(dy)


def _phase_shift(reference: np.ndarray, moving: np.ndarray, upsample: int) -> np.ndarray:
    """skimage.registration.phase_cross_correlation(reference, moving, upsample_factor=upsample)[0].

    The same algorithm (phase-normalised cross-power spectrum, integer peak, then a matrix DFT
    upsampled around it; Guizar-Sicairos et al. 2008) with single-precision scipy.fft FFTs: the
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
               for n, off in zip(shape, offsets)]
    # einsum's own loops, not a BLAS product: OpenBLAS hands products of this size to its threads, and on
    # busy cores one waited 3-10 ms per tie window (measured) for what takes 0.3 ms on the calling thread
    upsampled = np.einsum("ik,lk->il", np.einsum("ij,jk->ik", kernels[0], spectrum.conj()), kernels[1])
    peak = np.array(np.unravel_index(np.argmax(np.abs(upsampled)), upsampled.shape), float)
    return shifts + (peak - centre) / upsample


@lru_cache(maxsize=8)
def _hann(shape: tuple[int, int]) -> np.ndarray:
    """Taper so the window edges do not correlate as a strong artificial cross."""
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _tie_windows(grid: Grid, level: str) -> list[Window]:
    side, per_side = min(TIE_SIDE[level], grid.width // 2, grid.height // 2), TIES_PER_SIDE[level]
    # half-overlapping windows: a small or partial overlap still gives enough ties for RANSAC
    n_x = int(np.clip(2 * grid.width // side - 1, 3, per_side))
    n_y = int(np.clip(2 * grid.height // side - 1, 3, per_side))
    xs = np.linspace(0, grid.width - side, n_x).astype(int)
    ys = np.linspace(0, grid.height - side, n_y).astype(int)
    return [Window(int(x), int(y), side, side) for y in ys for x in xs]


def _measure(level: _Level, correction: Affine, windows: list[Window], before_tiles: list, pool) -> _Ties:
    after_views = [_level_view(after, level, correction) for _, after in level.sources]

    def one(window, before_tile):
        b, b_ok = before_tile
        if b_ok.mean() < MIN_VALID or not b.any():
            return None
        (a,), a_ok = _gradients(after_views, window)
        if a_ok.mean() < MIN_VALID or not a.any():
            return None
        return _correlate(b, a, upsample=10)

    found, displacement = [], []
    for window, d in zip(windows, pool.map(one, windows, before_tiles)):
        if d is not None:
            found.append((window.col_off + window.width / 2, window.row_off + window.height / 2))
            displacement.append(d)
    for view in after_views:
        view.close()
    return _Ties(np.array(found, float).reshape(-1, 2), np.array(displacement, float).reshape(-1, 2))


def _refine(level: _Level, correction: Affine, to_after_world: Affine, pool, evidence: str, passes: int):
    """Tie grid at one level: measure, fit a similarity, fold it in; repeat until it stops moving."""
    windows = _tie_windows(level.grid, level.name)
    before_views = [_level_view(before, level) for before, _ in level.sources]
    before_tiles = [(g[0], ok) for g, ok in pool.map(lambda w: _gradients(before_views, w), windows)]
    for view in before_views:
        view.close()
    for _ in range(passes):
        ties = _measure(level, correction, windows, before_tiles, pool)
        model, inliers = _fit(ties, len(windows), evidence)
        correction = _apply(correction, model, to_after_world)
        if _motion(model, level.grid) < FINAL_STEP_PX:
            break
    return correction, ties, inliers, model


def _fit(ties: _Ties, windows: int, evidence: str) -> tuple[Affine, np.ndarray]:
    n = len(ties.centres)
    need = max(MIN_TIES, int(math.ceil(MIN_INLIER_SHARE * n)))
    if n < need:
        raise RegistrationError(f"only {n} of {windows} tie windows hold texture in both epochs (need {need}): "
                                f"featureless or too little overlap ({evidence})")
    src, dst = ties.centres, ties.centres + ties.displacement
    model, inliers = ransac((src, dst), SimilarityTransform, min_samples=3, residual_threshold=1.0,
                            max_trials=1000, rng=0)
    found = 0 if inliers is None else int(inliers.sum())
    if model is None or found < need:
        raise RegistrationError(
            f"tie points disagree: {found} of {n} measured tie windows agree on one shift/rotation/scale "
            f"(need {need}): different places, too much change or heavy distortion ({evidence})")
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
