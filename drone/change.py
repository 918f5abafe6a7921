"""Per-block change evidence: a 0-1 score per pixel where 0.5 is the decision threshold."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from drone.params import ChangeParams


def excess_green(rgb: np.ndarray) -> np.ndarray:
    """(2G - R - B) / (R + G + B): the RGB stand-in for NDVI, high on leaves and grass."""
    r, g, b = rgb
    return (2 * g - r - b) / (r + g + b + 1.0)


def shadow_like(before: np.ndarray, after: np.ndarray, params: ChangeParams) -> np.ndarray:
    """New cast shadows darken ground by a roughly constant factor and are dark in every band."""
    darker = after.sum(axis=0) < params.shadow_ratio * before.sum(axis=0)
    return darker & (after.max(axis=0) < params.shadow_max_dn)


def change_score(before: np.ndarray, after: np.ndarray, valid: np.ndarray, height_gain: np.ndarray | None,
                 rgb_threshold: float, params: ChangeParams) -> np.ndarray:
    """Score 0-1 per pixel; height gain decides when DSMs exist, the RGB change otherwise.

    Vegetation in the after epoch never scores (trees and crops grow); without DSMs cast
    shadows do not score either, since they are the commonest RGB change next to a new roof.
    """
    vegetation = excess_green(after) > params.vegetation_exg
    if height_gain is not None:
        evidence = height_gain / (2 * params.min_height_m)
    else:
        magnitude = np.sqrt(((after - before) ** 2).sum(axis=0))
        evidence = magnitude / (2 * rgb_threshold)
        vegetation |= shadow_like(before, after, params)
    score = np.clip(evidence, 0, 1).astype(np.float32)
    score[vegetation | ~valid | ~np.isfinite(score)] = 0
    return score


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, int(round(radius_px)))
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def candidate_mask(score: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Decision plus shape clean-up: opening drops speckle and thin edge slivers, closing mends roofs."""
    mask = score >= 0.5
    mask = ndimage.binary_opening(mask, _disk(params.open_radius_m / params.analysis_gsd_m))
    mask = ndimage.binary_closing(mask, _disk(params.close_radius_m / params.analysis_gsd_m))
    return ndimage.binary_fill_holes(mask)


def halo_px(params: ChangeParams) -> int:
    """Context each block needs so morphology at its edge matches a whole-image run."""
    return int(np.ceil(2 * (params.open_radius_m + params.close_radius_m) / params.analysis_gsd_m)) + 2
