"""detect_changes: the one entry point the API, CLI and job runner call."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from drone.change import change_score, excess_green, halo_px, vegetation
from drone.errors import CancelledError, DroneError, InvalidRasterError
from drone.grid import Grid, common_grid, require_georeferenced
from drone.ongrid import open_on_grid
from drone.params import ChangeParams
from drone.radiometry import LinearRadiometry, fit_linear_radiometry
from drone.register import RegistrationReport, register_pair
from drone.settings import DroneSettings
from drone.vectorize import Candidate, block_objects, finish, merge_seams
from gis.settings import settings_of

GDAL_CACHE_MB = 256  # GDAL's default (5% of RAM) would count against the memory budget
SAMPLE_SIDE = 256
STABLE_MIN_SUM_DN = 120  # R+G+B below this is shadow: no use for a radiometric fit
PLANE_SAMPLES = 50_000  # DSM differences the vertical offset plane is fitted on
STABLE_MAX_EXCESS_GREEN = 0.03  # greener than this before is (partly) grass or leaves, which the season changes


@dataclass
class ChangeResult:
    candidates: list[Candidate]  # best score first
    crs: CRS
    registration: RegistrationReport
    radiometry: LinearRadiometry
    change_map_path: Path  # GeoTIFF: band 1 change score 0-1 (0.5 = decision), band 2 height gain m (DSM only)
    used_dsm: bool
    dsm_offset: VerticalOffset | None  # after - before plane on stable ground, removed before differencing

    def figures(self) -> dict:
        """What registration and calibration measured, for the job's report."""
        r = self.registration
        return {"residual_px": round(r.residual_px, 3), "residual_p95_px": round(r.residual_p95_px, 3),
                "overlap_share": r.overlap_share, "tie_points": r.tie_points, "inliers": r.inliers,
                "shift_px": [round(v, 2) for v in r.shift_px], "rotation_deg": round(r.rotation_deg, 4),
                "scale": round(r.scale, 5), "source": r.source,
                # corrected after georeference = correction @ after transform (world affine, after CRS): what puts
                # the after epoch where the before epoch is, e.g. for the review desk's after view
                "correction": [float(v) for v in r.correction[:6]],
                "dsm_offset_m": None if self.dsm_offset is None else round(self.dsm_offset.at_origin, 3)}


@dataclass(frozen=True)
class _Inputs:
    before_rgb: str
    after_rgb: str
    before_dsm: str | None
    after_dsm: str | None
    analysis: Grid
    correction: rasterio.Affine


class _Views:
    """One set of open datasets per worker thread: rasterio handles must not be shared across threads."""

    def __init__(self, inputs: _Inputs, handles: dict[str, rasterio.DatasetReader]):
        self.inputs, self.local, self.opened, self.lock = inputs, threading.local(), [], threading.Lock()
        self.shared = None
        # the handles registration read through hold its decoded tiles in GDAL's cache (which is per
        # handle): the first set of views reuses them instead of decoding those tiles again
        self.handles = dict(handles)

    def get(self) -> dict:
        if self.shared is not None:
            return self.shared
        if not hasattr(self.local, "views"):
            i = self.inputs
            views = {}
            for name, path, correction in (("before_rgb", i.before_rgb, None), ("after_rgb", i.after_rgb, i.correction),
                                           ("before_dsm", i.before_dsm, None), ("after_dsm", i.after_dsm, i.correction)):
                if path is None:
                    continue
                with self.lock:
                    src = self.handles.pop(name, None)
                if src is None:
                    src = rasterio.open(path)
                    with self.lock:
                        self.opened.append(src)
                views[name] = open_on_grid(src, i.analysis, correction or rasterio.Affine.identity())
                with self.lock:
                    self.opened.append(views[name])
            self.local.views = views
            if settings_of(DroneSettings).drone_share_handles and all(v.thread_safe for v in views.values()):
                # plain windowed readers serialise their reads: one handle per file lets every thread
                # reuse tiles another one decoded (GDAL's block cache is per handle), e.g. the halos
                self.shared = views
        return self.local.views

    def close(self) -> None:
        for handle in self.opened:
            handle.close()


def detect_changes(before_rgb: str | os.PathLike, after_rgb: str | os.PathLike,
                   before_dsm: str | os.PathLike | None = None, after_dsm: str | os.PathLike | None = None, *,
                   change_map_path: str | os.PathLike | None = None, params: ChangeParams = ChangeParams(),
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None) -> ChangeResult:
    """Co-register two epochs, difference them block by block and return new-structure candidates.

    Raises NotGeoreferencedError, NoOverlapError, RegistrationError (all DroneError) for inputs that
    cannot be compared, and CancelledError when `cancel` is set; `progress(done, total)` is called
    after every block.
    """
    if (before_dsm is None) != (after_dsm is None):
        raise DroneError("give both DSMs or neither")
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
        with contextlib.ExitStack() as stack:
            b, a = (stack.enter_context(_open(p, role, bands=(3, 4)))
                    for p, role in ((before_rgb, "before orthophoto"), (after_rgb, "after orthophoto")))
            grid = common_grid(b, a)
            for path, rgb in ((before_dsm, b), (after_dsm, a)):
                if path is not None:
                    _check_dsm(path, rgb)
            dsms = [stack.enter_context(_open(p, "DSM", bands=(1,))) if p is not None else None
                    for p in (before_dsm, after_dsm)]
            registration = register_pair(b, a, grid, *dsms)
            # nothing is written before the pair is known to be comparable: a refusal leaves no file
            out = Path(change_map_path) if change_map_path else _temporary_tif()
            # a whole multiple of the grid pixel keeps reads on the plain windowed path (no GDAL warp)
            analysis = grid.coarsened(grid.pixel_size * max(1, round(params.analysis_gsd_m / grid.pixel_size)))
            inputs = _Inputs(*(str(p) if p is not None else None for p in (before_rgb, after_rgb, before_dsm, after_dsm)),
                             analysis, registration.correction)
            views = _Views(inputs, {name: src for name, src in zip(("before_rgb", "after_rgb", "before_dsm", "after_dsm"),
                                                                    (b, a, *dsms)) if src is not None})
            try:
                with ThreadPoolExecutor(params.workers) as pool:
                    radiometry, bias = _calibrate(views, analysis, params, pool)
                    threshold = float(np.clip(params.rgb_change_sigmas * np.linalg.norm(radiometry.sigma),
                                              params.rgb_change_floor_dn, params.rgb_change_cap_dn))
                    parts = _run_blocks(views, analysis, radiometry, bias, threshold, params, out, pool, progress,
                                        cancel)
            except BaseException:
                out.unlink(missing_ok=True)
                raise
            finally:
                views.close()
    candidates = finish(merge_seams(parts), analysis.transform, params, with_height=before_dsm is not None)
    return ChangeResult(candidates, grid.crs, registration, radiometry, out, before_dsm is not None, bias)


def _temporary_tif() -> Path:
    fd, name = tempfile.mkstemp(suffix="_change.tif")
    os.close(fd)
    return Path(name)


def _open(path, role: str, bands: tuple[int, ...]) -> rasterio.DatasetReader:
    """Open an input raster or refuse it with the reason (unreadable, wrong band count)."""
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidRasterError(f"{role} {path} is not a raster GDAL can read ({exc})") from None
    if src.count not in bands:
        src.close()
        raise InvalidRasterError(f"{role} {path} needs {' or '.join(map(str, bands))} band(s); this one has "
                                 f"{src.count} (a DSM given as an orthophoto, or the other way round?)")
    return src


def _check_dsm(path, rgb: rasterio.DatasetReader) -> None:
    """A DSM must be one band, in its orthophoto's CRS and cover most of it (the same flight's product)."""
    with _open(path, "DSM", bands=(1,)) as src:
        require_georeferenced(src, "DSM")
        if src.crs != rgb.crs:
            raise DroneError(f"DSM {path} is in {src.crs}, its orthophoto in {rgb.crs}: they must come from one flight")
        left, bottom, right, top = rgb.bounds
        shared = (max(0.0, min(right, src.bounds.right) - max(left, src.bounds.left))
                  * max(0.0, min(top, src.bounds.top) - max(bottom, src.bounds.bottom)))
        if shared < 0.5 * (right - left) * (top - bottom):
            raise DroneError(f"DSM {path} covers {shared / ((right - left) * (top - bottom)):.0%} of its orthophoto: "
                             "not the same flight's DSM")


def _sample_windows(grid: Grid) -> list[Window]:
    side = min(SAMPLE_SIDE, grid.width // 3, grid.height // 3)
    return [Window(int(x), int(y), side, side) for y in np.linspace(0, grid.height - side, 3)
            for x in np.linspace(0, grid.width - side, 3)]


@dataclass(frozen=True)
class VerticalOffset:
    """after DSM - before DSM on stable ground: a plane (bias and tilt), metres at grid pixel (col, row)."""

    at_origin: float
    per_col: float
    per_row: float

    def on(self, window: Window) -> np.ndarray:
        cols = np.arange(window.width, dtype=np.float32) + window.col_off + 0.5
        rows = np.arange(window.height, dtype=np.float32) + window.row_off + 0.5
        return self.at_origin + self.per_col * cols[None, :] + self.per_row * rows[:, None]


def _calibrate(views: _Views, grid: Grid, params: ChangeParams, pool: ThreadPoolExecutor
               ) -> tuple[LinearRadiometry, VerticalOffset | None]:
    """Radiometric fit on stable pixels and the DSM vertical offset plane, from a 3 x 3 spread of sample windows.

    Season and shadows change whole classes of pixels (grass, leaves, soil, the ground a shadow
    moved off), so the fit is made on pixels that are neither greenish nor dark before and neither
    vegetation nor dark after (roads, roofs, bare soil), by a consensus that ignores the rest.
    """
    samples = list(pool.map(lambda window: _sample(views.get(), window), _sample_windows(grid)))
    before, after = ([s[i] for s in samples] for i in (0, 1))
    dh, where = ([s[i] for s in samples if s[2] is not None] for i in (2, 3))
    before, after = np.concatenate(before), np.concatenate(after)
    if len(before) < 1000:
        raise DroneError("too few overlapping pixels to compare radiometry")
    # pixel classes judged on colour and darkness, which an exposure change barely moves: roads, roofs and
    # bare soil remain; anything greenish before (grass, leaves, grass mixed into soil) is what a season changes
    stable = ~((excess_green(before.T) > STABLE_MAX_EXCESS_GREEN) | (before.sum(axis=1) < STABLE_MIN_SUM_DN)
               | (after.sum(axis=1) < STABLE_MIN_SUM_DN) | vegetation(after.T, params))
    radiometry = fit_linear_radiometry(before[stable] if stable.sum() >= 1000 else before,
                                       after[stable] if stable.sum() >= 1000 else after)
    offset = _vertical_offset(np.concatenate(dh), np.concatenate(where)) if dh else None
    return radiometry, offset


def _sample(views: dict, window: Window):
    """Both epochs' colours where both hold data, and the DSM differences with their grid positions."""
    b, b_ok = views["before_rgb"].read(window)
    a, a_ok = views["after_rgb"].read(window)
    ok = b_ok & a_ok
    if "before_dsm" not in views:
        return b[:, ok].T, a[:, ok].T, None, None
    diff = views["after_dsm"].read(window)[0] - views["before_dsm"].read(window)[0]
    rows, cols = np.nonzero(np.isfinite(diff))
    return (b[:, ok].T, a[:, ok].T, diff[rows, cols],
            np.column_stack([cols + window.col_off + 0.5, rows + window.row_off + 0.5]))


def _vertical_offset(dh: np.ndarray, where: np.ndarray) -> VerticalOffset:
    """Robust plane through the DSM differences: changed ground (new roofs, grown trees) is trimmed away."""
    if len(dh) < 100:
        raise DroneError("the DSMs share too few valid heights to compare")
    if len(dh) > PLANE_SAMPLES:  # an even stride keeps the spread; three coefficients need no more
        step = -(-len(dh) // PLANE_SAMPLES)
        dh, where = dh[::step], where[::step]
    design = np.column_stack([np.ones(len(dh)), where])
    keep = np.ones(len(dh), bool)
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(design[keep], dh[keep], rcond=None)
        residual = dh - design @ coef
        spread = 1.4826 * np.median(np.abs(residual[keep] - np.median(residual[keep])))
        keep = np.abs(residual) <= 3 * max(spread, 0.05)
    return VerticalOffset(*(float(c) for c in coef))


def _blocks(grid: Grid, size: int) -> list[Window]:
    return [Window(c, r, min(size, grid.width - c), min(size, grid.height - r))
            for r in range(0, grid.height, size) for c in range(0, grid.width, size)]


def _process_block(views: _Views, core: Window, grid: Grid, radiometry: LinearRadiometry, bias: VerticalOffset | None,
                   threshold: float, params: ChangeParams):
    halo = halo_px(params)
    c0, r0 = max(0, core.col_off - halo), max(0, core.row_off - halo)
    c1 = min(grid.width, core.col_off + core.width + halo)
    r1 = min(grid.height, core.row_off + core.height + halo)
    padded = Window(c0, r0, c1 - c0, r1 - r0)
    v = views.get()
    before, b_ok = v["before_rgb"].read(padded)
    after, a_ok = v["after_rgb"].read(padded)
    height_gain = None
    if "before_dsm" in v:
        height_gain = v["after_dsm"].read(padded)[0] - v["before_dsm"].read(padded)[0] - bias.on(padded)
    after = radiometry.apply(after)
    score, green, hidden = change_score(before, after, b_ok & a_ok, height_gain, threshold, params)
    inner = (slice(core.row_off - r0, core.row_off - r0 + core.height),
             slice(core.col_off - c0, core.col_off - c0 + core.width))
    seams = (core.row_off > 0, core.row_off + core.height < grid.height,
             core.col_off > 0, core.col_off + core.width < grid.width)
    parts = block_objects(score, green, hidden, height_gain, before, after, inner, core.col_off, core.row_off, seams,
                          params)
    score[~(b_ok & a_ok)] = np.nan
    gain_core = height_gain[inner] if height_gain is not None else None
    return score[inner], gain_core, parts


def _run_blocks(views, grid: Grid, radiometry, bias, threshold, params: ChangeParams, out: Path,
                pool: ThreadPoolExecutor, progress, cancel) -> list:
    blocks = _blocks(grid, params.block_px)
    with_height = bias is not None
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=2 if with_height else 1,
                   dtype="float32", crs=grid.crs, transform=grid.transform, nodata=np.nan, tiled=True,
                   # uncompressed: an intermediate the job turns into a compressed COG, and noisy float scores
                   # shrink by a quarter at best (ZSTD 1 took 4x the time of the write; deflate 10x)
                   blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
    parts, pending = [], deque()
    with rasterio.open(out, "w", **profile) as dst:
        dst.set_band_description(1, "change score 0-1 (0.5 = decision threshold)")
        if with_height:
            dst.set_band_description(2, "height gain after - before, m")
        todo = iter(blocks)
        for done in range(len(blocks)):
            while len(pending) < 2 * params.workers:  # bounded in-flight blocks keep memory flat
                core = next(todo, None)
                if core is None:
                    break
                pending.append((core, pool.submit(_process_block, views, core, grid, radiometry, bias,
                                                  threshold, params)))
            core, future = pending.popleft()
            score, gain, block_parts_ = future.result()
            dst.write(score, 1, window=core)
            if with_height:
                dst.write(gain.astype(np.float32), 2, window=core)
            parts += block_parts_
            if progress:
                progress(done + 1, len(blocks))
            if cancel is not None and cancel.is_set():
                for _, f in pending:
                    f.cancel()
                raise CancelledError(f"cancelled after {done + 1} of {len(blocks)} blocks")
    return parts
