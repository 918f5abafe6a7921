"""Scoring detections against SYNTHETIC ground truth (tests/support only): object F1 and true registration error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine


@dataclass(frozen=True)
class ObjectScores:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        return self.true_positives / max(1, self.true_positives + self.false_positives)

    @property
    def recall(self) -> float:
        return self.true_positives / max(1, self.true_positives + self.false_negatives)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def object_scores(detected, truth, min_iou: float = 0.5, ignore=()) -> ObjectScores:
    """Greedy one-to-one matching by descending IoU; a pair counts when IoU >= min_iou.

    Detections touching an `ignore` footprint (a structure cut by an epoch's edge) count neither way.
    """
    detected, truth, ignore = list(detected), list(truth), list(ignore)
    if ignore and detected:
        touched = set(shapely.STRtree(ignore).query(detected, predicate="intersects")[0])
        detected = [d for i, d in enumerate(detected) if i not in touched]
    pairs = []
    if detected and truth:
        tree = shapely.STRtree(truth)
        d_idx, t_idx = tree.query(detected, predicate="intersects")
        d_geom, t_geom = np.array(detected, object)[d_idx], np.array(truth, object)[t_idx]
        iou = shapely.area(shapely.intersection(d_geom, t_geom)) / shapely.area(shapely.union(d_geom, t_geom))
        pairs = sorted(zip(iou, d_idx, t_idx), reverse=True)
    used_d, used_t = set(), set()
    for iou, d, t in pairs:
        if iou >= min_iou and d not in used_d and t not in used_t:
            used_d.add(d)
            used_t.add(t)
    tp = len(used_d)
    return ObjectScores(tp, len(detected) - tp, len(truth) - tp)


def registration_error_px(estimated: Affine, true: Affine, bounds, pixel_size: float, n: int = 10) -> np.ndarray:
    """Distance between where the estimated and the true correction put the same points, on an n x n grid."""
    xs = np.linspace(bounds[0], bounds[2], n)
    ys = np.linspace(bounds[1], bounds[3], n)
    gx, gy = np.meshgrid(xs, ys)
    ex, ey = estimated @ (gx.ravel(), gy.ravel())
    tx, ty = true @ (gx.ravel(), gy.ravel())
    return np.hypot(ex - tx, ey - ty) / pixel_size
