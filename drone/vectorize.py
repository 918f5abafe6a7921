"""Candidate polygons: per-block parts, seam merging, clean-up, regularisation and scoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import Polygon, shape

from drone.change import candidate_mask
from drone.objects import N_STATS, colour_spread, correlation, hidden_plausible, object_stats, outline_edges
from drone.params import ChangeParams


def _pixel_frame(col_off: int, row_off: int) -> Affine:
    """Whole-grid pixel coordinates with y negated: never the identity, which rasterio warns about."""
    return Affine(1, 0, col_off, 0, -1, -row_off)


@dataclass
class Part:
    """A connected candidate inside one block, with sums that add up across block seams."""

    geometry: Polygon  # whole-grid pixel coordinates
    pixels: int
    score_sum: float
    height_sum: float
    green_sum: float  # pixels that look like vegetation in the after epoch
    on_seam: bool
    stats: np.ndarray = None  # drone/objects.py's additive sums (outline edges, brightness, colour)
    hidden: bool = False  # made of pixels masked as soil, dry grass or shadow: judged as a building shape only


@dataclass(frozen=True)
class Candidate:
    geometry: Polygon  # in the CRS of the analysis grid (the before raster's CRS)
    score: float  # 0-1 confidence that this is a new structure
    area_m2: float
    mean_height_gain_m: float | None
    rectangularity: float
    checks_passed: tuple[str, ...] = ()  # nuisance tests this object was put through and passed


def block_objects(score: np.ndarray, green: np.ndarray, hidden: np.ndarray, height_gain: np.ndarray | None,
                  before: np.ndarray, after: np.ndarray, inner: tuple[slice, slice], col_off: int, row_off: int,
                  seams: tuple[bool, bool, bool, bool], params: ChangeParams) -> list[Part]:
    """The candidate parts of one padded block's core: change objects, and (RGB-only) objects the
    nuisance masks hid, each with its per-object evidence."""
    origin = (inner[0].start, inner[1].start)
    gain_core = np.nan_to_num(height_gain[inner]) if height_gain is not None else None
    score_core = np.nan_to_num(score[inner])
    mask = candidate_mask(score, params)[inner]
    evidence = (before, after, origin, params) if height_gain is None else None  # heights need none of it
    parts = block_parts(mask, score_core, gain_core, green[inner], col_off, row_off, seams, evidence)
    if height_gain is None:
        masked = candidate_mask(hidden, params)[inner] & ~mask
        parts += block_parts(masked, score_core, None, green[inner], col_off, row_off, seams,
                             (before, after, origin, params), hidden=True)
    return parts


def block_parts(mask: np.ndarray, score: np.ndarray, height_gain: np.ndarray | None, green: np.ndarray,
                col_off: int, row_off: int, seams: tuple[bool, bool, bool, bool], evidence=None,
                hidden: bool = False) -> list[Part]:
    """Polygonise a block core in whole-grid pixel coordinates.

    Pixel coordinates are small integers, so edges on both sides of a seam coincide exactly and
    union merges them; world coordinates from per-block transforms differ in the last bits.
    `seams` (top, bottom, left, right) marks the edges shared with another block.
    """
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    pixels = ndimage.sum_labels(mask, labels, index)
    score_sum = ndimage.sum_labels(score, labels, index)
    height_sum = ndimage.sum_labels(height_gain, labels, index) if height_gain is not None else np.zeros(n)
    green_sum = ndimage.sum_labels(green, labels, index)
    stats = object_stats(labels, n, *evidence, hidden) if evidence is not None else np.zeros((n, N_STATS))
    edge_labels = [labels[0], labels[-1], labels[:, 0], labels[:, -1]]
    touching = np.zeros(n + 1, bool)
    for edge, shared in zip(edge_labels, seams):
        if shared:
            touching[edge] = True
    if hidden:  # most masked objects are shadows or browned ground: not worth a polygon unless a seam cuts them
        keep = np.concatenate([[False], touching[1:] | hidden_plausible(pixels, correlation(stats.T, pixels), evidence[3])])
        mask = mask & keep[labels]
    parts = []
    for geom, value in shapes(labels, mask=mask, transform=_pixel_frame(col_off, row_off), connectivity=4):
        i = int(value)
        parts.append(Part(shape(geom), int(pixels[i - 1]), float(score_sum[i - 1]), float(height_sum[i - 1]),
                          float(green_sum[i - 1]), bool(touching[i]), stats[i - 1], hidden))
    return parts


def merge_seams(parts: list[Part]) -> list[Part]:
    """Union the parts cut by block seams back into whole objects, adding up their sums (hidden and plain
    objects apart: they are judged differently)."""
    whole = [p for p in parts if not p.on_seam]
    for hidden in (False, True):
        cut = [p for p in parts if p.on_seam and p.hidden == hidden]
        if not cut:
            continue
        merged = shapely.get_parts(shapely.union_all([p.geometry for p in cut]))
        owner = shapely.STRtree(merged).query(
            shapely.point_on_surface([p.geometry for p in cut]), predicate="intersects")
        sums = np.zeros((len(merged), 4 + N_STATS))
        np.add.at(sums, owner[1], [(p.pixels, p.score_sum, p.height_sum, p.green_sum, *p.stats)
                                   for p in np.array(cut, object)[owner[0]]])
        whole += [Part(g, int(s[0]), s[1], s[2], s[3], False, s[4:], hidden) for g, s in zip(merged, sums)]
    return whole


RGB_CHECKS = ("not vegetation", "not seasonal or bare ground", "not shadow", "not vehicle", "min area",
              "vehicle-like: no (one colour, not vehicle-sized pieces)", "repaint of existing outline: no (outline is new)")
HIDDEN_CHECKS = ("not vegetation", "earth-coloured or dark: kept as a building shape (rectangular, new sharp outline, "
                 "not the before pattern)", "not vehicle", "min area", "vehicle-like: no (one colour, not vehicle-sized "
                 "pieces)", "repaint of existing outline: no (outline is new)")
DSM_CHECKS = ("height gain", "DSM vertical offset removed", "not vegetation", "not vehicle", "min area")


def is_vehicle(rectangle: Polygon, pixel_m: float, max_width_m: float, max_length_m: float) -> bool:
    """Small, compact and car- or truck-shaped: a parked vehicle, not a structure."""
    x, y = np.asarray(rectangle.exterior.coords)[:3].T
    sides = sorted(np.hypot(np.diff(x), np.diff(y)) * pixel_m)
    return sides[0] <= max_width_m and sides[1] <= max_length_m


def finish(parts: list[Part], grid_transform: Affine, params, with_height: bool) -> list[Candidate]:
    """Drop small objects and vehicles, regularise outlines, score each object and move it to world coordinates."""
    out = []
    pixel_m = abs(grid_transform.a)
    pixel_area_m2 = abs(grid_transform.determinant)
    t = grid_transform @ _pixel_frame(0, 0)
    to_world = [t.a, t.b, t.d, t.e, t.c, t.f]
    checks = DSM_CHECKS if with_height else RGB_CHECKS
    for p in parts:
        area = p.pixels * pixel_area_m2
        if area < params.min_area_m2:
            continue
        rectangle = shapely.minimum_rotated_rectangle(p.geometry)
        rectangularity = p.geometry.area / rectangle.area
        if is_vehicle(rectangle, pixel_m, params.vehicle_max_width_m, params.vehicle_max_length_m) or (
                area < params.vehicles_max_area_m2 and rectangularity < params.vehicles_max_rectangularity):
            continue
        if p.green_sum > 0.5 * p.pixels and rectangularity < params.rectangular_enough:
            continue  # a green, rounded object: a tree or a hedge grew, not a structure (a green roof is straight)
        if not with_height and not _building_evidence(p, rectangle, rectangularity, area, pixel_m, params):
            continue
        outline = rectangle if rectangularity >= params.rectangular_enough else p.geometry.simplify(1.0)
        outline = shapely.affinity.affine_transform(outline, to_world)
        strength = np.clip(2 * p.score_sum / p.pixels - 1, 0, 1)  # mean pixel score 0.5..1 -> 0..1
        size = min(1.0, area / (4 * params.min_area_m2))
        score = 0.6 * strength + 0.25 * rectangularity + 0.15 * size
        out.append(Candidate(outline, round(float(score), 4), round(area, 2),
                             round(p.height_sum / p.pixels, 2) if with_height else None, round(rectangularity, 3),
                             HIDDEN_CHECKS if p.hidden else checks))
    return sorted(out, key=lambda c: -c.score)


def _building_evidence(p: Part, rectangle: Polygon, rectangularity: float, area: float, pixel_m: float,
                       params: ChangeParams) -> bool:
    """RGB-only: not vehicles of two colours, not a repainted existing roof, and a masked (hidden) object
    only when it is shaped and outlined like a new building."""
    if (area <= params.vehicle_group_max_area_m2
            and colour_spread(p.stats, p.pixels) >= params.vehicle_group_colour_spread_dn):
        return False
    before_edge, after_edge = outline_edges(p.stats)
    inside_kept = float(correlation(p.stats, p.pixels))
    if (before_edge >= max(params.repaint_edge_ratio * after_edge, params.outline_min_step_dn)
            and inside_kept >= params.repaint_min_correlation):
        return False
    if not p.hidden:
        return True
    x, y = np.asarray(rectangle.exterior.coords)[:3].T
    short, long = sorted(np.hypot(np.diff(x), np.diff(y)))
    return (rectangularity >= params.hidden_min_rectangularity and area <= params.hidden_max_area_m2
            and long <= params.hidden_max_elongation * max(short, 1e-9)
            and inside_kept <= params.hidden_max_correlation and after_edge >= params.hidden_min_step_dn)
