"""Radiometric normalisation of the after epoch to the before epoch's scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826
MAX_SAMPLES = 200_000


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


def fit_linear_radiometry(before: np.ndarray, after: np.ndarray, iterations: int = 3) -> LinearRadiometry:
    """Per-band linear map of after onto before by matching quantiles of pseudo-invariant pixels (rows of (n, 3)).

    A least-squares regression of before on after shrinks the gain towards zero as soon as the
    epochs correlate weakly (another season, another sun): matching the spread (10th-90th
    percentile) and the median does not. Changed pixels still spoil the match, so each round
    drops pixels whose residual in any band exceeds 3 robust sigmas and matches again on the rest.
    """
    if len(before) > MAX_SAMPLES:  # an even stride keeps the spread; 2e5 pixels pin a gain to ~1e-3
        step = -(-len(before) // MAX_SAMPLES)
        before, after = before[::step], after[::step]
    keep = np.ones(len(before), bool)
    before, after = before.astype(np.float64), after.astype(np.float64)
    for _ in range(iterations):
        b, a = before[keep], after[keep]
        b_lo, b_mid, b_hi = np.percentile(b, [10, 50, 90], axis=0)
        a_lo, a_mid, a_hi = np.percentile(a, [10, 50, 90], axis=0)
        gains = (b_hi - b_lo) / np.maximum(a_hi - a_lo, 1e-6)
        offsets = b_mid - gains * a_mid
        residual = before - (after * gains + offsets)
        kept = residual[keep]
        sigma = MAD_TO_SIGMA * np.median(np.abs(kept - np.median(kept, axis=0)), axis=0)
        keep = (np.abs(residual) <= 3 * np.maximum(sigma, 0.5)).all(axis=1)
    as_tuple = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return LinearRadiometry(as_tuple(gains), as_tuple(offsets), as_tuple(np.maximum(sigma, 0.5)))
