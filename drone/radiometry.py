"""Radiometric normalisation of the after epoch to the before epoch's scale."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
from rasterio.enums import Resampling

MAD_TO_SIGMA = 1.4826
MAX_SAMPLES = 50_000  # pixels the lines are refitted on: six numbers need no more, and medians cost per pixel


@dataclass(frozen=True)
class LinearRadiometry:
    """after_normalised = gain * after + offset per band; `sigma` is the residual noise on invariant pixels."""

    gain: tuple[float, float, float]
    offset: tuple[float, float, float]
    sigma: tuple[float, float, float]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        gain = np.asarray(self.gain, np.float32)[:, None, None]
        offset = np.asarray(self.offset, np.float32)[:, None, None]
        return rgb * gain + offset


def fit_linear_radiometry(before: np.ndarray, after: np.ndarray, seed: int = 0) -> LinearRadiometry:
    """Per-band linear map of after onto before from candidate invariant pixels (rows of (n, 3)).

    Another sun or season moves whole slices of the distribution (shadows fall on lit ground or
    leave it, grass browns), so neither a regression (it shrinks the gain as soon as the epochs
    correlate weakly) nor matching quantiles of the two distributions (a longer shadow widens the
    after spread) holds. Unchanged pixels lie on one line per band and changed ones scatter, so
    the lines are found by RANSAC: a pair of pixels of different brightness proposes a line per
    band, and the proposal that pixels lie near IN ALL THREE BANDS (a changed class, e.g. grass that
    browned, can line up in one band by chance, not in three) across the whole brightness range wins
    (each slice of brightness votes alike: a line pivoting on one dense class, e.g. the roads, is
    supported by that class only); only plausible exposure and white-balance changes are proposed.
    The lines are then refitted by least squares on the pixels near them (a pure gain for a band
    whose consensus spans too little brightness to pin a slope), whose spread is the noise `sigma`.
    """
    rng = np.random.default_rng(seed)
    if len(before) > MAX_SAMPLES:
        pick = rng.choice(len(before), MAX_SAMPLES, replace=False)
        before, after = before[pick], after[pick]
    before, after = before.astype(np.float64), after.astype(np.float64)
    if len(before) < 2:
        return LinearRadiometry((1.0,) * 3, (0.0,) * 3, (0.5,) * 3)
    gains, offsets = _propose(before, after, rng)
    scored = rng.choice(len(before), min(len(before), SCORING_SAMPLES), replace=False)
    b, a = before[scored], after[scored]
    near_all = np.ones((len(gains), len(b)), bool)
    for band in range(3):
        near_all &= np.abs(b[None, :, band] - (gains[:, None, band] * a[None, :, band] + offsets[:, None, band])) <= INLIER_DN
    # any line through one dense class (all the roads) finds support there; the exposure line is the one
    # that unchanged pixels of EVERY brightness support, so each brightness slice counts alike
    grey = a.mean(axis=1)
    slices = np.searchsorted(np.quantile(grey, np.linspace(0, 1, BRIGHTNESS_SLICES + 1)[1:-1]), grey)
    share = np.zeros(len(gains))
    for i in range(BRIGHTNESS_SLICES):
        in_slice = slices == i
        if in_slice.any():
            share += near_all[:, in_slice].mean(axis=1)
    best = int(np.argmax(share))
    gain, offset = gains[best].copy(), offsets[best].copy()
    near = (np.abs(before - (after * gain + offset)) <= 2 * INLIER_DN).all(axis=1)
    for _ in range(2):  # least squares on the consensus, then the consensus of that fit
        if near.sum() < 10:
            break
        refined = gain.copy()
        for band in range(3):
            x, y = after[near, band], before[near, band]
            low, high = np.percentile(x, [5, 95])
            if high - low >= MIN_RANGE_DN:
                refined[band] = np.polyfit(x, y, 1)[0]
            else:  # one narrow class (the roads) identifies no slope, and a fit inside it is diluted towards 0
                refined[band] = np.median(y) / max(float(np.median(x)), 1.0)
        if _plausible(refined[None])[0]:
            gain = refined
        offset = np.median(before[near] - after[near] * gain, axis=0)
        residual = before - (after * gain + offset)
        sigma = MAD_TO_SIGMA * np.median(np.abs(residual[near]), axis=0)
        near = (np.abs(residual) <= np.maximum(3 * sigma, INLIER_DN)).all(axis=1)
    residual = (before - (after * gain + offset))[near] if near.any() else np.zeros((1, 3))
    sigma = MAD_TO_SIGMA * np.median(np.abs(residual - np.median(residual, axis=0)), axis=0)
    as_tuple = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return LinearRadiometry(as_tuple(gain), as_tuple(offset), as_tuple(np.maximum(sigma, 0.5)))


GAIN_RANGE = (0.5, 2.0)  # exposure between two flights stays well inside this ...
WHITE_BALANCE_RANGE = 1.35  # ... and the bands' gains within this factor of each other
MAX_OFFSET_DN = 80.0
INLIER_DN = 6.0  # a pixel this close to a proposed line in every band supports it (sensor noise is 2-5 DN)
TRIALS = 400
SCORING_SAMPLES = 10_000
BRIGHTNESS_SLICES = 8  # equal-count slices of after brightness, each with one vote share in the consensus
MIN_RANGE_DN = 50.0  # the consensus must span this (5th-95th percentile) for its slope to be fitted
MIN_SPAN_DN = 20.0  # the two pixels of a proposal must differ this much in a band, or its slope is noise


def _propose(before: np.ndarray, after: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (gain, offset) lines through random pixel pairs, plausible ones only; (k, 3) each."""
    i, j = rng.integers(0, len(before), (2, TRIALS))
    span = after[j] - after[i]
    usable = np.abs(span) >= MIN_SPAN_DN
    gain = np.where(usable, (before[j] - before[i]) / np.where(usable, span, 1.0), 1.0)
    # a band whose two pixels are too alike borrows the mean gain of the others (white balance is near-neutral)
    mean_gain = (gain * usable).sum(axis=1) / np.maximum(usable.sum(axis=1), 1)
    gain = np.where(usable, gain, mean_gain[:, None])
    offset = before[i] - gain * after[i]
    plausible = (usable.sum(axis=1) >= 2) & _plausible(gain) & (np.abs(offset) <= MAX_OFFSET_DN).all(axis=1)
    identity = (np.ones((1, 3)), np.zeros((1, 3)))
    if not plausible.any():
        return identity
    return np.vstack([gain[plausible], identity[0]]), np.vstack([offset[plausible], identity[1]])


def _plausible(gains: np.ndarray) -> np.ndarray:
    """Rows of per-band gains an exposure and white-balance change can produce."""
    return (((gains >= GAIN_RANGE[0]) & (gains <= GAIN_RANGE[1])).all(axis=1)
            & (gains.max(axis=1) <= WHITE_BALANCE_RANGE * gains.min(axis=1)))


DN_SCALE_SAMPLE_PX = 512
EIGHT_BIT_WHITE = 255.0


def dn_scale(src: rasterio.DatasetReader) -> float:
    """Factor that puts an RGB raster's values on the 8-bit scale every DN threshold of detection assumes:
    1 for 8-bit; for 16-bit (full range or a 12-bit sensor's) or float orthophotos, its 99.9th percentile
    becomes 255 (white balance kept: one factor for all bands; the radiometric fit absorbs the rest)."""
    if src.dtypes[0] == "uint8":
        return 1.0
    return _dn_scale(src.name, os.stat(src.name).st_mtime_ns, src.width, src.height)


@lru_cache(maxsize=16)
def _dn_scale(path: str, modified_ns: int, width: int, height: int) -> float:
    shrink = max(1, max(width, height) // DN_SCALE_SAMPLE_PX)
    with rasterio.open(path) as src:
        data = src.read([1, 2, 3], out_shape=(3, height // shrink, width // shrink), masked=True,
                        resampling=Resampling.nearest)
    values = data.compressed() if np.ma.isMaskedArray(data) else data.ravel()
    values = values[np.isfinite(values)]
    top = float(np.percentile(values, 99.9)) if values.size else 0.0
    return EIGHT_BIT_WHITE / top if top > 0 else 1.0
