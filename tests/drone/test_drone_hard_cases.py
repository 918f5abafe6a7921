"""RGB-only hard cases of issue 14 (tests/support/drone_scenes.HARD_CASES), on held-out seeds only.

Each case is painted on its own on two HELD_OUT_SEEDS scenes (tuning looked at TUNING_SEEDS only) and
scored on the case's own objects: new roofs of that kind found, or distractors reported.
"""

import pytest

from drone.pipeline import detect_changes
from tests.support.drone_scenes import HELD_OUT_SEEDS, scene_spec, write_scene_pair
from tests.support.drone_scoring import object_scores

SEEDS = HELD_OUT_SEEDS[3:5]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """hard case -> [(pair, RGB-only result)] over SEEDS."""
    cache = {}

    def run(case: str, condition: str = "baseline"):
        if (case, condition) not in cache:
            cache[case, condition] = []
            for seed in SEEDS:
                folder = tmp_path_factory.mktemp(f"{case}_{seed}")
                pair = write_scene_pair(folder, scene_spec(condition, size_px=1000, seed=seed, hard_cases=(case,),
                                                           with_dsm=False))
                result = detect_changes(pair.before_rgb, pair.after_rgb, change_map_path=folder / "cm.tif")
                cache[case, condition].append((pair, result))
        return cache[case, condition]
    return run


def _found(runs_of_case, name: str) -> tuple[int, int]:
    """(found, total) of a case's new roofs: matched one to one at IoU >= 0.5."""
    found = total = 0
    for pair, result in runs_of_case:
        footprints = pair.hard[name]
        total += len(footprints)
        found += object_scores([c.geometry for c in result.candidates], footprints).true_positives
    return found, total


def _reported(runs_of_case, name: str) -> tuple[int, int]:
    """(reported, total) of a case's distractors: touched by any candidate."""
    reported = total = 0
    for pair, result in runs_of_case:
        footprints = pair.hard[name]
        total += len(footprints)
        reported += sum(any(c.geometry.intersects(f) for c in result.candidates) for f in footprints)
    return reported, total


def _false(runs_of_case) -> int:
    return sum(object_scores([c.geometry for c in r.candidates], p.truth, ignore=p.ignore).false_positives
               for p, r in runs_of_case)


def test_parked_vehicle_pairs_are_not_structures_but_small_sheds_are_found(runs):
    """Two cars end to end or side by side, a car beside a truck: none is a shed; two small sheds are."""
    case = runs("vehicle_pairs_distractors")
    reported, total = _reported(case, "vehicle_pairs_distractors")
    assert total >= 6 and reported <= 1, (reported, total)
    found, sheds = _found(case, "small_sheds")
    assert sheds >= 3 and found >= sheds - 1, (found, sheds)
    assert all(any(check.startswith("vehicle-like: no") for check in c.checks_passed)
               for _, r in case for c in r.candidates)


def test_earth_coloured_and_dark_grey_roofs_are_found_without_false_soil(runs):
    case = runs("earthy_roofs")
    found, total = _found(case, "earthy_roofs")
    assert total >= 5 and found >= total // 2, (found, total)
    assert _false(case) <= 1


def test_roofs_built_in_an_old_shadow_are_found(runs):
    case = runs("roofs_in_old_shadow")
    found, total = _found(case, "roofs_in_old_shadow")
    assert total >= 2 and found >= total - 1, (found, total)


def test_a_repainted_existing_roof_is_not_new(runs):
    """Same outline, another colour: the outline was there before and the inside keeps its pattern."""
    case = runs("repainted_roofs_distractors")
    reported, total = _reported(case, "repainted_roofs_distractors")
    assert total >= 4 and reported == 0, (reported, total)
    assert all("repaint of existing outline: no (outline is new)" in c.checks_passed for _, r in case for c in r.candidates)


@pytest.mark.parametrize("condition", ["season", "sun"])
def test_earth_coloured_roofs_after_another_season_or_sun_bring_no_false_candidates(runs, condition):
    """Browned grass, bare branches and moved shadows are masked per pixel; only building shapes come back.

    (Recall of earth-coloured roofs under these conditions is low, 1 of 5 here: see bench/RESULTS.md.)
    """
    case = runs("earthy_roofs", condition)
    assert _false(case) <= 1
