"""Per-block change evidence: a 0-1 score per pixel where 0.5 is the decision threshold.

Change between two flights is mostly nuisance: the sun moved (shadows), the season turned
(leaves fell, grass browned, soil was dug), the exposure differs. Every nuisance class is masked
with a visible-band test on both epochs, so only changes that look like a new built surface score:

- vegetation: green-dominant pixels (excess green and G the largest band) in the after epoch;
- seasonal / bare ground: pixels that are earth-coloured after (soil, dry grass, bare branches
  over ground), whatever they were before: leaf fall, browning and digging all end there;
- shadow: pixels much darker than in the other epoch and dark in every band, in either direction.

With DSMs the height gain decides (vegetation is then judged per object: trees grow, but a green
roof is still a roof), and the RGB evidence fills DSM voids. Vehicles, repaints and roofs hidden by the
masks are judged per object (drone/objects.py, drone/vectorize.py).
"""

from __future__ import annotations

import numpy as np

from drone.imageops import close, fill_holes, open_
from drone.objects import drop_vehicle_pieces
from drone.params import ChangeParams


def excess_green(rgb: np.ndarray) -> np.ndarray:
    """(2G - R - B) / (R + G + B): the RGB stand-in for NDVI, high on leaves and grass."""
    r, g, b = rgb
    return (2 * g - r - b) / (r + g + b + 1.0)


def vegetation(rgb: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Green-dominant pixels; a teal or cyan roof has high excess green too but blue above green."""
    r, g, b = rgb
    return (excess_green(rgb) > params.vegetation_exg) & (g > r) & (g > b)


def earthy(rgb: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Soil, dry grass, bare branches: warm, low-saturation, red >= green >= blue chromaticity."""
    r, g, b = rgb
    total = r + g + b + 1.0
    red_blue, red_green, green_blue = (r - b) / total, (r - g) / total, (g - b) / total
    return ((total < 3 * params.ground_max_dn) & (red_blue > params.earth_red_blue[0]) & (red_blue < params.earth_red_blue[1])
            & (red_green > params.earth_red_green_min) & (red_green < params.earth_red_green_max) & (green_blue > -0.01))


def chromaticity(rgb: np.ndarray) -> np.ndarray:
    """(r, g) = (R, G) / (R + G + B): what a shadow (a roughly uniform darkening) leaves unchanged."""
    return rgb[:2] / (rgb.sum(axis=0) + 1.0)


def chroma_evidence(before: np.ndarray, after: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Change of colour regardless of brightness, 0.5 at `chroma_change`: a grey roof on grass or soil of the
    same brightness differs little in DN but much in colour. Dark pixels have no reliable colour."""
    total_b, total_a = before.sum(axis=0) + 1.0, after.sum(axis=0) + 1.0
    shift = np.abs(before / total_b - after / total_a).max(axis=0)
    lit = (total_b > params.chroma_min_sum_dn) & (total_a > params.chroma_min_sum_dn)
    return np.where(lit, shift / (2 * params.chroma_change), 0.0)


def shadow_like(before: np.ndarray, after: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Cast shadows, new or gone: one epoch much darker and dark in every band.

    A shadow that is gone must also leave the colour alone: that keeps a blue roof built where a
    tree's shadow lay, which darkening alone would mask.
    """
    b_sum, a_sum = before.sum(axis=0), after.sum(axis=0)
    same_colour = np.abs(chromaticity(before) - chromaticity(after)).max(axis=0) < params.shadow_chroma_tolerance
    new = (a_sum < params.shadow_ratio * b_sum) & (after.max(axis=0) < params.shadow_max_dn)
    gone = ((b_sum < params.shadow_ratio * a_sum) & (before.max(axis=0) < params.shadow_max_dn)
            & (a_sum < 3 * params.ground_max_dn) & same_colour)  # a roof built in an old shadow still counts
    return new | gone


def nuisance_mask(before: np.ndarray, after: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Pixels whose RGB change is explained by vegetation, season, bare ground or shadow."""
    return vegetation(after, params) | earthy(after, params) | shadow_like(before, after, params)


def change_score(before: np.ndarray, after: np.ndarray, valid: np.ndarray, height_gain: np.ndarray | None,
                 rgb_threshold: float, params: ChangeParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score 0-1 per pixel, where the after epoch looks like vegetation, and where an RGB change was masked as
    soil, dry grass or shadow (an earth-coloured or dark roof hides there; drone/objects.py judges it per object).

    Height gain decides where DSMs have heights, the RGB change (nuisance masked) elsewhere. With
    heights, vegetation is judged per object (drone/vectorize.py): a green roof stands straight,
    a tree is round, and a pixel cannot tell them apart.
    """
    green = vegetation(after, params)
    magnitude = np.sqrt(((after - before) ** 2).sum(axis=0))
    rgb_evidence = np.maximum(magnitude / (2 * rgb_threshold), chroma_evidence(before, after, params))
    nuisance = nuisance_mask(before, after, params)
    hidden = nuisance & (rgb_evidence >= 0.5) & ~green & valid
    rgb_evidence[nuisance] = 0
    if height_gain is not None:
        evidence = np.where(np.isfinite(height_gain), height_gain / (2 * params.min_height_m), rgb_evidence)
    else:
        evidence = rgb_evidence
    score = np.clip(evidence, 0, 1).astype(np.float32)
    score[~valid | ~np.isfinite(score)] = 0
    return score, green, hidden


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, int(round(radius_px)))
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def candidate_mask(score: np.ndarray, params: ChangeParams) -> np.ndarray:
    """Decision plus shape clean-up: opening drops speckle and thin edge slivers, closing mends roofs."""
    mask = open_(score >= 0.5, _disk(params.open_radius_m / params.analysis_gsd_m))
    mask = drop_vehicle_pieces(mask, params)  # before closing joins two parked vehicles into one shed-sized object
    mask = close(mask, _disk(params.close_radius_m / params.analysis_gsd_m))
    return fill_holes(mask)


def halo_px(params: ChangeParams) -> int:
    """Context each block needs so morphology at its edge matches a whole-image run."""
    return int(np.ceil(2 * (params.open_radius_m + params.close_radius_m) / params.analysis_gsd_m)) + 2
