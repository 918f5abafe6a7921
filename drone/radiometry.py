"""Radiometric normalisation of the after epoch to the before epoch's scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826


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
    """Per-band least squares on pseudo-invariant pixels (rows of (n, 3) arrays).

    Changed pixels are what spoils a plain fit, so each round drops pixels whose residual in any
    band exceeds 3 robust sigmas and refits on the rest.
    """
    keep = np.ones(len(before), bool)
    for _ in range(iterations):
        design = np.column_stack([after[keep], np.ones(keep.sum())])
        gains, offsets = [], []
        for band in range(3):
            (g, o), *_ = np.linalg.lstsq(design[:, [band, 3]], before[keep, band], rcond=None)
            gains.append(g)
            offsets.append(o)
        residual = before - (after * gains + np.asarray(offsets))
        sigma = MAD_TO_SIGMA * np.median(np.abs(residual[keep] - np.median(residual[keep], axis=0)), axis=0)
        keep = (np.abs(residual) <= 3 * np.maximum(sigma, 0.5)).all(axis=1)
    as_tuple = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return LinearRadiometry(as_tuple(gains), as_tuple(offsets), as_tuple(np.maximum(sigma, 0.5)))
