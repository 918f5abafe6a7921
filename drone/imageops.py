"""Fast stand-ins for the scipy.ndimage operations detection repeats on every window and block.

Same results as the scipy calls they replace (binary morphology exactly, the Gaussian gradient to
float precision: the same kernels and reflect border), 6-30x faster; the OpenCV ones release the
GIL so both detection threads work at once.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

# detection parallelises over windows and blocks itself; OpenCV's own threads would wait for a core
cv2.setNumThreads(1)

CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # scipy's default structuring element in 2-D
_OUTSIDE_EMPTY = dict(borderType=cv2.BORDER_CONSTANT, borderValue=0)  # scipy's border_value=0


def gaussian_gradient_magnitude(image: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage.gaussian_gradient_magnitude(image, sigma) of a float32 image."""
    smooth, derivative = _gaussian_kernels(sigma, truncate)
    gx = cv2.sepFilter2D(image, cv2.CV_32F, derivative, smooth, borderType=cv2.BORDER_REFLECT)
    gy = cv2.sepFilter2D(image, cv2.CV_32F, smooth, derivative, borderType=cv2.BORDER_REFLECT)
    return cv2.magnitude(gx, gy)


def _gaussian_kernels(sigma: float, truncate: float) -> tuple[np.ndarray, np.ndarray]:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x * x / sigma**2)
    phi /= phi.sum()
    return phi.astype(np.float32), (-x / sigma**2 * phi).astype(np.float32)


def dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """scipy.ndimage.binary_dilation(mask, iterations=iterations)."""
    return cv2.dilate(mask.view(np.uint8), CROSS, iterations=iterations, **_OUTSIDE_EMPTY).view(bool)


def erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """scipy.ndimage.binary_erosion(mask, iterations=iterations, border_value=0)."""
    return cv2.erode(mask.view(np.uint8), CROSS, iterations=iterations, **_OUTSIDE_EMPTY).view(bool)


def open_(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """scipy.ndimage.binary_opening(mask, structure) for a symmetric structuring element."""
    return cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, structure.view(np.uint8), **_OUTSIDE_EMPTY).view(bool)


def close(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """scipy.ndimage.binary_closing(mask, structure) for a symmetric structuring element."""
    return cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_CLOSE, structure.view(np.uint8), **_OUTSIDE_EMPTY).view(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """scipy.ndimage.binary_fill_holes(mask): background not 4-connected to the border is a hole. One
    labelling pass instead of scipy's dilation from the border, ~8x faster on a block."""
    labels, count = ndimage.label(~mask)
    return ~on_border(labels, count)[labels] | mask  # label 0 is the mask itself


def on_border(labels: np.ndarray, count: int) -> np.ndarray:
    """(count + 1,) flags of the labels that touch the array's edge (label 0 included if it does)."""
    touching = np.zeros(count + 1, bool)
    touching[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    return touching
