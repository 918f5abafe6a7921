"""The radiometric fit must hold when whole classes of pixels change between flights (shadows moved,
grass browned): the old quantile match gave gains of 0.5-0.6 for an unchanged exposure under a moved sun."""

import numpy as np
import pytest

from drone.change import chroma_evidence
from drone.params import ChangeParams
from drone.radiometry import fit_linear_radiometry


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_fit_recovers_the_exposure_when_a_third_of_the_pixels_changed(seed):
    rng = np.random.default_rng(seed)
    n = 60_000
    before = rng.uniform(60, 230, (n, 1)) * rng.uniform(0.85, 1.15, (n, 3))  # roads, roofs, soil of many tones
    gain, offset = np.array([1.15 * 1.06, 1.15, 1.15 * 0.9]), -8.0
    after = before * gain + offset + rng.normal(0, 2, (n, 3))
    moved = rng.permutation(n)[:n // 3]
    shadowed, browned = moved[: n // 6], moved[n // 6:]
    after[shadowed] *= 0.42  # a longer afternoon shadow fell on lit ground
    after[browned] = np.array([138, 124, 84]) * gain + offset + rng.normal(0, 6, (len(browned), 3))  # dry grass
    fit = fit_linear_radiometry(before, after)
    assert np.allclose(fit.gain, 1 / gain, rtol=0.02), fit
    assert np.allclose(fit.offset, -offset / gain, atol=2.0), fit
    assert max(fit.sigma) < 4, fit  # the noise of the unchanged pixels, not the spread of the changed ones


def test_colour_change_counts_where_brightness_barely_changes():
    params = ChangeParams()
    grass = np.array([88, 118, 62], np.float32)[:, None, None]
    grey_roof = np.array([100, 104, 106], np.float32)[:, None, None]  # about as bright as the grass
    darker_grass = grass * 0.9
    assert chroma_evidence(grass, grey_roof, params)[0, 0] >= 0.5
    assert chroma_evidence(grass, darker_grass, params)[0, 0] < 0.1  # exposure alone leaves colour alone
