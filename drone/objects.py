"""Per-object evidence in one block: what tells a new building from vehicles, a repaint or a shadow.

Without a DSM a pixel cannot tell a new roof from much that is not one, but an object can:

- vehicles: a car or truck is a narrow piece of change; two parked end to end or side by side are
  two such pieces a road-coloured gap apart (dropped before the clean-up could join them), or, when
  they touch, one small object of two colours (a roof is one material);
- repaint: an existing roof painted another colour changes inside an outline the before flight
  already had (a strong edge along the same outline); a new building's outline is new;
- hidden roofs: a roof coloured like soil or dry grass, or dark grey like asphalt or a shadow, is
  masked as nuisance per pixel; it is brought back as an object only when it looks like a
  building: a compact rectangle with a NEW sharp outline whose inside does not repeat the before
  pattern (a shadow or browned grass keeps the ground's pattern; a roof replaces it).

Every statistic is a sum per object, so objects cut by block seams add up (drone/vectorize.py).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from drone.imageops import on_border
from drone.params import ChangeParams

# additive per-object sums (columns of `object_stats`)
RING_PX, BEFORE_EDGE, AFTER_EDGE, SB, SA, SBB, SAA, SAB = range(8)
COLOUR = slice(8, 11)  # after R, G, B sums
COLOUR_SQ = slice(11, 14)  # after R, G, B squared sums
N_STATS = 14
RING_PX_WIDE = 2  # inner band of an object's outline that its edge strength is read on
_SQUARE = np.ones((3, 3), bool)


def drop_vehicle_pieces(mask: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Remove connected pieces as narrow and short as a vehicle (second moments: vectorised, no polygons).

    Pieces touching the array edge are kept: their true extent is unknown here.
    """
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    count[0] = 1
    mr, mc = np.bincount(lab, rows, n + 1) / count, np.bincount(lab, cols, n + 1) / count
    vr = np.bincount(lab, rows * rows.astype(np.float64), n + 1) / count - mr ** 2
    vc = np.bincount(lab, cols * cols.astype(np.float64), n + 1) / count - mc ** 2
    cov = np.bincount(lab, rows * cols.astype(np.float64), n + 1) / count - mr * mc
    spread = np.sqrt(((vr - vc) / 2) ** 2 + cov ** 2)
    px = params.analysis_gsd_m
    # a run of k pixels has variance (k^2 - 1) / 12
    length = np.sqrt(12 * ((vr + vc) / 2 + spread) + 1) * px
    width = np.sqrt(np.maximum(12 * ((vr + vc) / 2 - spread) + 1, 0)) * px
    vehicle = ((width <= params.vehicle_piece_max_width_m) & (length <= params.vehicle_max_length_m)
               & ~on_border(labels, n))
    vehicle[0] = False
    return mask & ~vehicle[labels]


def _edge_strength(rgb: np.ndarray) -> np.ndarray:
    """Colour step across each pixel (DN, mean over bands), spread 1 px: an outline 1 px off still counts."""
    step = np.zeros(rgb.shape[1:], np.float32)
    for band in rgb:
        step += np.hypot(ndimage.sobel(band, 0), ndimage.sobel(band, 1))
    return ndimage.maximum_filter(step / (4 * len(rgb)), size=3)


def object_stats(labels: np.ndarray, n: int, before: np.ndarray, after: np.ndarray, origin: tuple[int, int],
                 params: ChangeParams, hidden: bool) -> np.ndarray:
    """(n, N_STATS) sums per label of `labels` (a block core); `before`/`after` are the padded block,
    `origin` the core's (row, col) in it.

    Outline edges cost filtering, so they are read only where a test needs them: on objects of the
    minimum area whose brightness correlation could make them a repaint (plain objects) or a hidden
    roof (hidden objects, no larger than one may be).
    """
    stats = np.zeros((n, N_STATS))
    if n == 0:
        return stats
    r0, c0 = origin
    pixels = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols] - 1
    if hidden:  # masked ground larger than any roof (browned fields, long shadows) needs no sums
        small = (pixels * params.analysis_gsd_m ** 2 <= params.hidden_max_area_m2)[lab]
        rows, cols, lab = rows[small], cols[small], lab[small]
    b, a = before[:, rows + r0, cols + c0], after[:, rows + r0, cols + c0]
    lb, la = b.mean(axis=0), a.mean(axis=0)
    for column, weights in ((SB, lb), (SA, la), (SBB, lb * lb), (SAA, la * la), (SAB, lb * la)):
        stats[:, column] = np.bincount(lab, weights, n)
    for band in range(3):
        stats[:, COLOUR.start + band] = np.bincount(lab, a[band], n)
        stats[:, COLOUR_SQ.start + band] = np.bincount(lab, a[band] * a[band], n)
    pixel_m2 = params.analysis_gsd_m ** 2
    kept = correlation(stats.T, pixels)
    big = (pixels * pixel_m2 >= params.min_area_m2) & (kept >= params.repaint_min_correlation)
    if hidden:
        big = hidden_plausible(pixels, kept, params)
    height, width = labels.shape
    for i, found in enumerate(ndimage.find_objects(labels)):
        if found is None or not big[i]:
            continue
        rs = slice(max(0, found[0].start - 3), min(height, found[0].stop + 3))
        cs = slice(max(0, found[1].start - 3), min(width, found[1].stop + 3))
        obj = labels[rs, cs] == i + 1
        # border_value=1: where the core cuts an object (a seam), that cut is not its outline
        ring = obj & ~ndimage.binary_erosion(obj, _SQUARE, iterations=RING_PX_WIDE, border_value=1)
        window = (slice(None), slice(rs.start + r0, rs.stop + r0), slice(cs.start + c0, cs.stop + c0))
        stats[i, RING_PX] = ring.sum()
        stats[i, BEFORE_EDGE] = _edge_strength(before[window])[ring].sum()
        stats[i, AFTER_EDGE] = _edge_strength(after[window])[ring].sum()
    return stats


def hidden_plausible(pixels: np.ndarray, kept: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Hidden objects that may still be a roof by area and brightness correlation (before their outline is known)."""
    area = pixels * params.analysis_gsd_m ** 2
    return (area >= params.min_area_m2) & (area <= params.hidden_max_area_m2) & (kept <= params.hidden_max_correlation)


def correlation(stats: np.ndarray, pixels):
    """Pearson correlation of before and after brightness inside an object (stats along the first axis)."""
    n = np.maximum(pixels, 1.0)
    cov = stats[SAB] / n - stats[SB] * stats[SA] / n ** 2
    var_b = stats[SBB] / n - (stats[SB] / n) ** 2
    var_a = stats[SAA] / n - (stats[SA] / n) ** 2
    return cov / np.sqrt(np.maximum(var_b * var_a, 1e-9))


def colour_spread(stats: np.ndarray, pixels: float) -> float:
    """Largest per-band standard deviation of the after colour inside the object, DN."""
    n = max(pixels, 1.0)
    var = stats[COLOUR_SQ] / n - (stats[COLOUR] / n) ** 2
    return float(np.sqrt(np.maximum(var, 0)).max())


def outline_edges(stats: np.ndarray) -> tuple[float, float]:
    """Mean colour step along the object's outline in the before and the after epoch, DN."""
    ring = max(stats[RING_PX], 1.0)
    return float(stats[BEFORE_EDGE] / ring), float(stats[AFTER_EDGE] / ring)
