"""Drone-style pairs made from a REAL image (tests/support only): real texture, known transformations.

The before epoch is a crop of real pixels (tests/support/real_imagery.py: Landsat 7 over the East
Bay, Oakland/Berkeley street grids and the hills behind them), written unchanged. The after epoch is
resampled from the same real image through known, realistic acquisition effects: a georeference off
by metres with a rotation and a scale error, another GSD, another CRS, gain/offset/white balance,
sensor noise, JPEG compression, a partial overlap. So the truth of the registration is known exactly.
Optionally, SYNTHETIC new structures (roof-like rectangles) are painted into the after epoch only.

PRETENDED GSD: the real pixels are 30 m; both epochs are written with a 0.1 m geotransform
(PRETEND_GSD_M) in CGCS2000 / Gauss-Kruger (EPSG:4548) near Suqian. Detection's thresholds are in
metres for drone imagery (analysis at 0.2 m, 10 m2 minimum structure, vehicles under 3.5 m wide,
ingest accepts 0.01-10 m), so the real 30 m labels would put the pair outside what it is for.
Registration and the per-pixel change test work on pixels: edges, texture and the histogram are
what they see, and those are the real image's. What the pretence does not test: whether real
drone-scale content (parallax, vehicles, trees at 5 cm) behaves like this texture.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.windows import Window
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon, box

from drone.errors import DroneError
from drone.pipeline import detect_changes
from tests.support.drone_scenes import CRS_EPSG, SUQIAN_ORIGIN
from tests.support.drone_scoring import object_scores, registration_error_px
from tests.support.real_imagery import landsat7_sf_bay

BEFORE_WINDOW = Window(1250, 450, 800, 800)  # real pixels: East Bay street grids, port, hills; little water
PRETEND_GSD_M = 0.1
ROOF_COLOURS = [(190, 190, 185), (60, 105, 165), (230, 232, 228), (160, 62, 48)]  # concrete, blue steel, white steel, red tile
ROOF_WIDTH_M = (5.0, 8.0)  # wider than a vehicle (params.vehicle_max_width_m 3.5) ...
ROOF_LENGTH_M = (6.0, 12.0)  # ... and larger than params.min_area_m2 (10 m2): sheds to small houses
ROOF_GAP_M = 3.0
VEHICLE_COLOURS = [(235, 235, 235), (25, 25, 28), (170, 172, 175), (170, 30, 30), (40, 60, 140)]
CAR_M = (1.8, 4.5)  # width, length of a car ...
TRUCK_M = (2.5, 9.0)  # ... and of a truck: both within params.vehicle_max_width_m / vehicle_max_length_m
SUPERSAMPLE = 4  # roof edges are rasterised at 4x and averaged: a partial pixel is a colour mix, as in a photo


@dataclass(frozen=True)
class RealCase:
    """Effects on the after epoch. Every case has a misregistration: no two flights share a georeference."""

    shift_m: tuple[float, float] = (2.7, -1.9)  # (east, north) error of the after georeference
    rotation_deg: float = 0.8
    scale: float = 1.005
    after_gsd_m: float = PRETEND_GSD_M
    after_epsg: int = CRS_EPSG
    gain: float = 1.0
    offset: float = 0.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise_sigma: float = 2.0
    jpeg_quality: int | None = None
    overlap_shift: float = 0.0  # after footprint moved south by this fraction of the extent
    roofs: int = 8
    seed: int = 0
    window: Window = BEFORE_WINDOW  # the real pixels of the before epoch (or of the after's place in the whole file)
    roof_colours: tuple = tuple(ROOF_COLOURS)
    vehicles: int = 0  # cars (every fourth a truck) parked in the after epoch only: never to be reported
    before_as_shipped: bool = False  # before = the whole real file as shipped (COG layout, overviews, nodata 0)


_RADIOMETRY = dict(gain=1.15, offset=-8.0, white_balance=(1.06, 1.0, 0.9), noise_sigma=4.0)
CASES: dict[str, RealCase] = {
    "misregistration": RealCase(seed=11),
    "gsd": RealCase(after_gsd_m=0.16, seed=12),
    "crs": RealCase(after_epsg=32650, seed=13),
    "radiometry": RealCase(**_RADIOMETRY, seed=14),
    "jpeg": RealCase(jpeg_quality=75, seed=15),
    "partial_overlap": RealCase(overlap_shift=0.4, seed=16),
    "all": RealCase(after_gsd_m=0.16, after_epsg=32650, jpeg_quality=75, overlap_shift=0.4, **_RADIOMETRY, seed=17),
    # the real file's own bytes as the before epoch (only its georeference rewritten): its tiling, overviews
    # and per-band nodata go through the reader as shipped
    "as_shipped": RealCase(before_as_shipped=True, seed=18),
    # the misregistration README says detection handles (several metres, 2 deg, 1 %), at its limit
    "readme_limits": RealCase(shift_m=(6.0, -4.5), rotation_deg=2.0, scale=1.01, seed=19),
    # about half of it open bay water: featureless, near-black, tie windows there measure noise
    "shoreline": RealCase(window=Window(1250, 1000, 800, 800), seed=20),
    "vehicles": RealCase(vehicles=12, seed=21),
}
# roof colours README lists as missed without a DSM (bench only, to measure them on real texture; not a target)
KNOWN_MISSES: dict[str, RealCase] = {
    "earth_coloured_roofs": RealCase(roof_colours=((150, 118, 92), (140, 112, 90)), seed=31),
    "dark_grey_roofs": RealCase(roof_colours=((72, 72, 74), (60, 62, 64)), seed=32),
}


@dataclass
class RealPair:
    before_rgb: Path
    after_rgb: Path
    truth: list[Polygon]  # SYNTHETIC new roofs, before CRS (EPSG:4548) metres
    true_correction: Affine  # world affine (after CRS) that maps the after georeference onto the truth
    overlap: Polygon  # shared ground, before CRS
    overlap_after_bounds: tuple[float, float, float, float]  # the same, after CRS bounds (for the true error)


def _real_to_world() -> Affine:
    """Real-image pixel -> pretended before-CRS metres (the before crop's top-left at SUQIAN_ORIGIN)."""
    x0, y1 = SUQIAN_ORIGIN
    return Affine(PRETEND_GSD_M, 0, x0, 0, -PRETEND_GSD_M, y1) @ Affine.translation(-BEFORE_WINDOW.col_off,
                                                                                     -BEFORE_WINDOW.row_off)


def _transform_polygon(polygon: Polygon, transformer: Transformer | None) -> Polygon:
    if transformer is None:
        return polygon
    return shapely.transform(polygon.segmentize(1.0), lambda xy: np.column_stack(transformer.transform(*xy.T)))


def write_real_pair(out_dir: str | Path, case: RealCase, *, plant: bool) -> RealPair:
    """Write the before crop and the after epoch (with SYNTHETIC roofs if `plant`); see the module docstring."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(landsat7_sf_bay()) as src:
        real = src.read()  # every band as stored: the real histogram, zeros included
    real_to_world = _real_to_world()
    window = case.window
    extent = window.width * PRETEND_GSD_M
    before_path = out / "real_before_rgb.tif"
    if case.before_as_shipped:
        shutil.copyfile(landsat7_sf_bay(), before_path)
        with rasterio.open(before_path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:  # a header edit only
            dst.crs, dst.transform = f"EPSG:{CRS_EPSG}", real_to_world
        before_box = box(*rasterio.transform.array_bounds(real.shape[1], real.shape[2], real_to_world))
    else:
        before_transform = real_to_world @ Affine.translation(window.col_off, window.row_off)
        before_box = box(*rasterio.transform.array_bounds(window.height, window.width,
                                                          before_transform))
        rows, cols = window.toslices()
        _write(before_path, real[:, rows, cols], before_transform, CRS_EPSG, None)

    to_after = (None if case.after_epsg == CRS_EPSG
                else Transformer.from_crs(CRS_EPSG, case.after_epsg, always_xy=True))
    to_before = (None if to_after is None
                 else Transformer.from_crs(case.after_epsg, CRS_EPSG, always_xy=True))
    window_box = box(*rasterio.transform.array_bounds(window.height, window.width, real_to_world
                                                      @ Affine.translation(window.col_off, window.row_off)))
    after_box_b = affinity.translate(window_box, 0, -case.overlap_shift * extent)  # before CRS
    left, top = (after_box_b.bounds[0], after_box_b.bounds[3])
    if to_after is not None:
        left, top = to_after.transform(left, top)
    size = int(round(extent / case.after_gsd_m))
    after_transform = Affine(case.after_gsd_m, 0, left, 0, -case.after_gsd_m, top)
    after_box_a = box(left, top - size * case.after_gsd_m, left + size * case.after_gsd_m, top)
    cx, cy = after_box_a.centroid.x, after_box_a.centroid.y
    # after pixel u truly shows after-CRS point S(T_after(u)): rotation and scale about the centre, then the shift
    truth_map = (Affine.translation(*case.shift_m) @ Affine.translation(cx, cy) @ Affine.rotation(case.rotation_deg)
                 @ Affine.scale(case.scale) @ Affine.translation(-cx, -cy))
    seen_a = affinity.affine_transform(after_box_a, [truth_map.a, truth_map.b, truth_map.d, truth_map.e,
                                                     truth_map.c, truth_map.f])
    overlap_b = shapely.intersection(before_box, _transform_polygon(seen_a, to_before))
    overlap_a = shapely.intersection(_transform_polygon(before_box, to_after), seen_a)

    rng = np.random.default_rng(case.seed)
    area = overlap_b.buffer(-ROOF_GAP_M)
    truth = _place(rng, area, case.roofs, [], lambda: (rng.uniform(*ROOF_WIDTH_M), rng.uniform(*ROOF_LENGTH_M)))
    truth = truth if plant else []
    vehicles = _place(rng, area, case.vehicles, truth,
                      lambda: TRUCK_M if rng.uniform() < 0.25 else CAR_M)
    scene = real.astype(np.float32)
    _paint(scene, truth, list(case.roof_colours), ~real_to_world, rng, ridge=True)
    _paint(scene, vehicles, VEHICLE_COLOURS, ~real_to_world, rng, ridge=False)

    # where every after pixel centre reads the (painted) real image: S, the CRS change, then real pixel indices
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    wx, wy = (truth_map @ after_transform) @ (xs.ravel(), ys.ravel())
    if to_before is not None:
        wx, wy = to_before.transform(wx, wy)
    col, row = ~real_to_world @ (np.asarray(wx), np.asarray(wy))
    coords = np.stack([row - 0.5, col - 0.5])
    margin = 4
    if (coords.min() < margin or coords[0].max() > real.shape[1] - margin
            or coords[1].max() > real.shape[2] - margin):
        raise ValueError(f"the after epoch of {case} reads outside the real image")
    ratio = case.after_gsd_m / PRETEND_GSD_M
    after = np.empty((3, size, size), np.float32)
    for band in range(3):
        image = scene[band]
        if ratio > 1:  # a coarser camera integrates more ground per pixel: no aliasing
            image = ndimage.gaussian_filter(image, 0.5 * math.sqrt(ratio**2 - 1))
        after[band] = ndimage.map_coordinates(image, coords, order=3, mode="nearest").reshape(size, size)
    wb = np.asarray(case.white_balance, np.float32)[:, None, None]
    after = after * case.gain * wb + case.offset + rng.normal(0, case.noise_sigma, after.shape)
    after_path = out / "real_after_rgb.tif"
    _write(after_path, np.clip(np.round(after), 0, 255).astype(np.uint8), after_transform, case.after_epsg,
           case.jpeg_quality)
    return RealPair(before_path, after_path, truth, truth_map, overlap_b, overlap_a.bounds)


def run_case(case: RealCase, folder: Path, plant: bool) -> dict:
    """Detection on one pair of `case`: the true registration error (max over a 10 x 10 grid on the
    overlap, and what it was before correction), the detector's own residual, candidates and object F1."""
    pair = write_real_pair(folder, case, plant=plant)
    try:
        result = detect_changes(pair.before_rgb, pair.after_rgb, change_map_path=folder / "change.tif")
    except DroneError as exc:
        return {"refused": str(exc)}
    report = result.registration
    error = registration_error_px(report.correction, pair.true_correction, pair.overlap_after_bounds,
                                  report.pixel_size_m)
    uncorrected = registration_error_px(Affine.identity(), pair.true_correction, pair.overlap_after_bounds,
                                        report.pixel_size_m)
    scores = object_scores([c.geometry for c in result.candidates], pair.truth)
    return {"refused": None, "true_error_px": float(error.max()),
            "uncorrected_error_px": float(uncorrected.max()), "residual_px": report.residual_px,
            "inliers": report.inliers, "tie_points": report.tie_points, "overlap_share": report.overlap_share,
            "candidates": len(result.candidates), "scores": scores, "crs": result.crs.to_epsg()}


def _place(rng: np.random.Generator, area: Polygon, n: int, taken: list[Polygon], size) -> list[Polygon]:
    """n rotated rectangles of size() = (width, length) m inside `area`, ROOF_GAP_M from each other and `taken`."""
    placed: list[Polygon] = []
    x0, y0, x1, y1 = area.bounds
    for _ in range(5000):
        if len(placed) == n:
            break
        w, length = size()
        centre = (rng.uniform(x0, x1), rng.uniform(y0, y1))
        shape = affinity.rotate(box(-length / 2, -w / 2, length / 2, w / 2), rng.uniform(0, 90))
        shape = affinity.translate(shape, *centre)
        if area.contains(shape) and all(shape.distance(r) >= ROOF_GAP_M for r in taken + placed):
            placed.append(shape)
    if len(placed) < n:
        raise ValueError(f"only {len(placed)} of {n} rectangles fit the overlap")
    return placed


def _paint(scene: np.ndarray, shapes: list[Polygon], colours: list, world_to_real: Affine, rng: np.random.Generator,
           ridge: bool) -> None:
    """Rectangles in place, on the real image, with a little texture and anti-aliased edges; a gable roof
    (`ridge`) has two slopes 12 DN apart."""
    for i, roof in enumerate(shapes):
        colour = np.asarray(colours[i % len(colours)], np.float32)
        corners = np.array([world_to_real @ xy for xy in roof.exterior.coords[:-1]])
        c0, r0 = np.floor(corners.min(axis=0)).astype(int) - 2
        c1, r1 = np.ceil(corners.max(axis=0)).astype(int) + 2
        h, w = r1 - r0, c1 - c0
        local = (corners - (c0, r0)) * SUPERSAMPLE - 0.5  # fillPoly's integer coordinates are pixel centres
        fine = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.uint8)
        cv2.fillPoly(fine, [np.round(local * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
        cover = fine.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(axis=(1, 3)) / 255.0
        # the ridge runs along the long side: pixels on one side of it are the lit slope
        (ax, ay), (bx, by), (cx_, cy_) = corners[:3]
        long_first = math.dist((ax, ay), (bx, by)) >= math.dist((bx, by), (cx_, cy_))
        ux, uy = ((bx - ax, by - ay) if not long_first else (cx_ - bx, cy_ - by))  # across the ridge
        mid = corners.mean(axis=0)
        yy, xx = np.mgrid[r0:r1, c0:c1] + 0.5
        lit = ((xx - mid[0]) * ux + (yy - mid[1]) * uy) > 0
        roof_rgb = colour[:, None, None] + np.where(lit, 6.0, -6.0) * ridge + rng.normal(0, 3, (3, h, w))
        patch = scene[:, r0:r1, c0:c1]
        scene[:, r0:r1, c0:c1] = patch * (1 - cover) + roof_rgb * cover


def _write(path: Path, data: np.ndarray, transform: Affine, epsg: int, jpeg_quality: int | None) -> None:
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8",
                   crs=f"EPSG:{epsg}", transform=transform, tiled=True, blockxsize=256, blockysize=256,
                   photometric="RGB", compress="deflate", predictor=2)
    if jpeg_quality:
        profile.update(compress="JPEG", photometric="YCBCR", jpeg_quality=jpeg_quality)
        profile.pop("predictor")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        # internal overviews as an ingested analysis COG has them (halve while over a block)
        dst.build_overviews([2**i for i in range(1, 32) if data.shape[1] / 2 ** (i - 1) > 512], Resampling.average)
