"""The OpenCV stand-ins give what the scipy.ndimage calls they replace give, at the image's borders too."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from drone.change import _disk
from drone.imageops import close, dilate, erode, fill_holes, gaussian_gradient_magnitude, open_


def _blobs(seed: int, shape=(301, 257)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random(shape), 3) > 0.51
    mask[:4] = rng.random((4, shape[1])) > 0.3  # speckle on the border, where border handling shows
    mask[:, -3:] = True
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_binary_morphology_is_scipys_exactly(seed):
    mask = _blobs(seed)
    opening, closing = _disk(1 + seed % 3), _disk(2 + seed % 4)
    assert (open_(mask, opening) == ndimage.binary_opening(mask, opening)).all()
    assert (close(mask, closing) == ndimage.binary_closing(mask, closing)).all()
    assert (dilate(mask, 3) == ndimage.binary_dilation(mask, iterations=3)).all()
    assert (erode(mask, 2) == ndimage.binary_erosion(mask, iterations=2, border_value=0)).all()
    ring = ~_blobs(seed + 100)  # many holes, some open to the border
    assert (fill_holes(ring) == ndimage.binary_fill_holes(ring)).all()
    assert (fill_holes(mask) == ndimage.binary_fill_holes(mask)).all()


@pytest.mark.parametrize("seed", range(3))
def test_gradient_magnitude_is_scipys(seed):
    rng = np.random.default_rng(seed)
    image = (ndimage.gaussian_filter(rng.random((190, 233)), 1.5) * 255).astype(np.float32)
    image[50:90, 60:140] += 80  # a roof edge
    expected = ndimage.gaussian_gradient_magnitude(image, 1.0)
    np.testing.assert_allclose(gaussian_gradient_magnitude(image, 1.0), expected, rtol=1e-4, atol=1e-3)
