import threading

import pytest
import rasterio

from drone.errors import CancelledError
from tests.support.drone_scoring import object_scores, registration_error_px
from drone.params import ChangeParams
from drone.pipeline import detect_changes


def _run(pair, tmp_path, with_dsm, **kw):
    dsm = (pair.before_dsm, pair.after_dsm) if with_dsm else (None, None)
    return detect_changes(pair.before_rgb, pair.after_rgb, *dsm, change_map_path=tmp_path / "change.tif", **kw)


def test_object_f1_with_dsm_meets_target(changed_pair, tmp_path):
    _, pair = changed_pair
    result = _run(pair, tmp_path, True)
    scores = object_scores([c.geometry for c in result.candidates], pair.truth, ignore=pair.ignore)
    assert scores.f1 >= 0.90, scores
    assert all(0 <= c.score <= 1 and c.area_m2 >= 10 for c in result.candidates)
    assert all(c.mean_height_gain_m > 2 and "height gain" in c.checks_passed for c in result.candidates)


def test_rgb_only_finds_most_structures_and_lists_its_checks(changed_pair, tmp_path):
    _, pair = changed_pair
    result = _run(pair, tmp_path, False)
    scores = object_scores([c.geometry for c in result.candidates], pair.truth, ignore=pair.ignore)
    assert scores.recall >= 0.5, scores
    assert all("not shadow" in c.checks_passed and c.mean_height_gain_m is None for c in result.candidates)


def test_registration_recovers_known_shift_rotation_and_scale(changed_pair, tmp_path):
    spec, pair = changed_pair
    report = _run(pair, tmp_path, with_dsm=False).registration
    true_error = registration_error_px(report.correction, pair.true_correction, pair.overlap.bounds, spec.gsd_m)
    assert true_error.max() <= 0.5
    assert report.residual_px <= 0.5
    assert report.rotation_deg == pytest.approx(spec.rotation_deg, abs=0.05)
    assert report.scale == pytest.approx(spec.scale, abs=1e-3)
    assert report.overlap_share == pytest.approx(1.0, abs=0.05) and report.inliers >= 0.5 * report.tie_points


@pytest.mark.parametrize("with_dsm", [True, False])
def test_unchanged_pair_with_every_nuisance_gives_at_most_one_candidate(unchanged_pair, tmp_path, with_dsm):
    _, pair = unchanged_pair
    result = _run(pair, tmp_path, with_dsm)
    assert len(result.candidates) <= 1, [(c.area_m2, c.geometry.centroid) for c in result.candidates]


def test_change_map_is_a_georeferenced_geotiff(changed_pair, tmp_path):
    _, pair = changed_pair
    result = _run(pair, tmp_path, with_dsm=True)
    with rasterio.open(result.change_map_path) as cm, rasterio.open(pair.before_rgb) as before:
        assert cm.crs == before.crs and cm.count == 2
        assert cm.res == pytest.approx((0.16, 0.16))  # the analysis GSD (0.2 m) rounded to whole 8 cm pixels
        assert cm.read(1, masked=True).max() > 0.5


def test_small_blocks_give_the_same_objects_as_large_blocks(changed_pair, tmp_path):
    _, pair = changed_pair
    big = _run(pair, tmp_path, with_dsm=True, params=ChangeParams(block_px=1024)).candidates
    small = _run(pair, tmp_path, with_dsm=True, params=ChangeParams(block_px=96)).candidates
    assert len(small) == len(big)
    assert sorted(c.area_m2 for c in small) == pytest.approx(sorted(c.area_m2 for c in big), rel=1e-6)


def test_progress_is_reported_and_cancel_stops_between_blocks(changed_pair, tmp_path):
    _, pair = changed_pair
    cancel, seen = threading.Event(), []

    def progress(done, total):
        seen.append((done, total))
        if done == 2:
            cancel.set()

    with pytest.raises(CancelledError):
        _run(pair, tmp_path, with_dsm=False, params=ChangeParams(block_px=128), progress=progress, cancel=cancel)
    assert seen[-1][0] == 2 and seen[-1][1] > 2
    assert not (tmp_path / "change.tif").exists()
