"""SYNTHETIC pairs written once per test session (real GeoTIFFs, read back through rasterio).

Every pair here uses HELD_OUT_SEEDS of tests/support/drone_scenes.py: seeds the detector's
thresholds were never tuned on.
"""

import pytest

from tests.support.drone_scenes import HELD_OUT_SEEDS, scene_spec, write_scene_pair


@pytest.fixture(scope="session")
def changed_pair(tmp_path_factory):
    spec = scene_spec("misregistration", size_px=1000, seed=HELD_OUT_SEEDS[0], new_structures=10,
                      gain=1.12, offset=-9.0)
    return spec, write_scene_pair(tmp_path_factory.mktemp("changed"), spec)


@pytest.fixture(scope="session")
def unchanged_pair(tmp_path_factory):
    """No new structure, but everything else a second flight brings: season, sun, exposure, GNSS error, vehicles."""
    spec = scene_spec("all", size_px=800, seed=HELD_OUT_SEEDS[1], plant_changes=False, overlap_shift=0.0)
    return spec, write_scene_pair(tmp_path_factory.mktemp("unchanged"), spec)

# city_pair and orthophoto_files (shared with the wall's browser test) live in tests/fixtures_drone.py.
