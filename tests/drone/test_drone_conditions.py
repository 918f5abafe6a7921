"""Detection under each real-flight condition on its own and all at once, on held-out seeds only.

Each condition of tests/support/drone_scenes.CONDITIONS gets its own held-out seed (the scene
differs too: roofs, sizes, tree cover). Registration must hold everywhere; object F1 with DSMs is
pooled over the conditions, since a small scene holds only a handful of new structures.
"""

import pytest

from drone.errors import DroneError, NoOverlapError
from drone.pipeline import detect_changes
from tests.support.drone_scenes import CONDITIONS, CRS_EPSG, HELD_OUT_SEEDS, scene_spec, write_scene_pair
from tests.support.drone_scoring import ObjectScores, object_scores, registration_error_px

NAMES = [name for name in CONDITIONS if name != "baseline"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """condition -> (spec, pair, result with DSMs)."""
    out = {}
    for i, name in enumerate(NAMES):
        spec = scene_spec(name, size_px=560, seed=HELD_OUT_SEEDS[2 + i])
        folder = tmp_path_factory.mktemp(name)
        pair = write_scene_pair(folder, spec)
        out[name] = spec, pair, detect_changes(pair.before_rgb, pair.after_rgb, pair.before_dsm, pair.after_dsm,
                                               change_map_path=folder / "change.tif")
    return out


@pytest.mark.parametrize("name", NAMES)
def test_every_condition_registers_to_half_a_pixel(runs, name):
    spec, pair, result = runs[name]
    report = result.registration
    assert report.residual_px <= 0.5
    assert report.inliers >= 5 and report.source == "rgb+dsm"
    if spec.after_epsg == CRS_EPSG:  # the true correction is known in the scene's own CRS
        error = registration_error_px(report.correction, pair.true_correction, pair.overlap.bounds,
                                      report.pixel_size_m)
        assert error.max() <= 0.5, error.max()


def test_partial_overlap_is_detected_in_the_overlap_and_said(runs):
    _, pair, result = runs["partial_overlap"]
    assert 0.5 <= result.registration.overlap_share <= 0.7
    assert all(pair.overlap.buffer(2.0).contains(c.geometry) for c in result.candidates)


def test_object_f1_with_dsm_over_all_conditions(runs):
    total = _pooled((pair, result) for _, pair, result in runs.values())
    assert total.true_positives >= 12, total
    assert total.f1 >= 0.90, total


def _pooled(pairs_and_results) -> ObjectScores:
    total = ObjectScores(0, 0, 0)
    for pair, result in pairs_and_results:
        s = object_scores([c.geometry for c in result.candidates], pair.truth, ignore=pair.ignore)
        total = ObjectScores(total.true_positives + s.true_positives, total.false_positives + s.false_positives,
                             total.false_negatives + s.false_negatives)
    return total


def test_object_f1_rgb_only_over_all_conditions(runs, tmp_path):
    """The same held-out pairs without their DSMs: the issue's RGB-only target (0.80)."""
    total = _pooled((pair, detect_changes(pair.before_rgb, pair.after_rgb, change_map_path=tmp_path / f"{name}.tif"))
                    for name, (_, pair, _) in runs.items())
    assert total.true_positives >= 12, total
    assert total.f1 >= 0.80, total


@pytest.mark.parametrize("condition", ["sun", "all"])
def test_no_change_pair_rgb_only_gives_at_most_one_candidate(condition, tmp_path):
    """Shadows moved and lengthened by an afternoon sun (alone, and with everything else) are not new structures."""
    spec = scene_spec(condition, size_px=700, seed=HELD_OUT_SEEDS[16], plant_changes=False, overlap_shift=0.0)
    pair = write_scene_pair(tmp_path, spec)
    result = detect_changes(pair.before_rgb, pair.after_rgb, change_map_path=tmp_path / "cm.tif")
    assert len(result.candidates) <= 1, [(c.area_m2, c.rectangularity) for c in result.candidates]


def test_too_little_overlap_is_refused_with_the_evidence(tmp_path):
    spec = scene_spec("baseline", size_px=400, seed=HELD_OUT_SEEDS[15], overlap_shift=0.8, with_dsm=False)
    pair = write_scene_pair(tmp_path, spec)
    with pytest.raises(NoOverlapError, match=r"share 2\d% of the smaller footprint"):
        detect_changes(pair.before_rgb, pair.after_rgb, change_map_path=tmp_path / "cm.tif")
    assert not (tmp_path / "cm.tif").exists()


def test_a_dsm_without_its_orthophoto_and_a_non_raster_are_refused(changed_pair, tmp_path):
    _, pair = changed_pair
    with pytest.raises(DroneError, match="band"):
        detect_changes(pair.before_rgb, pair.after_dsm, change_map_path=tmp_path / "cm.tif")
    with pytest.raises(DroneError, match="both DSMs"):
        detect_changes(pair.before_rgb, pair.after_rgb, pair.before_dsm, None, change_map_path=tmp_path / "cm.tif")
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster\n" * 20)
    with pytest.raises(DroneError, match="not a raster GDAL can read"):
        detect_changes(pair.before_rgb, notes, change_map_path=tmp_path / "cm.tif")
    assert not (tmp_path / "cm.tif").exists()
