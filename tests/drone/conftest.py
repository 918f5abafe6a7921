"""SYNTHETIC pairs written once per test session (real GeoTIFFs, read back through rasterio)."""

import pytest

from tests.support.drone_scenes import SceneSpec, write_scene_pair


@pytest.fixture(scope="session")
def changed_pair(tmp_path_factory):
    spec = SyntheticPairSpec(size_px=3072, seed=3, new_structures=14)
    return spec, write_synthetic_pair(tmp_path_factory.mktemp("changed"), spec)


@pytest.fixture(scope="session")
def unchanged_pair(tmp_path_factory):
    spec = SyntheticPairSpec(size_px=2048, seed=5, plant_changes=False, rotation_deg=0.0, scale=1.0,
                             shift_px=(4.6, -3.3), gain=1.2, offset=-14.0)
    return spec, write_synthetic_pair(tmp_path_factory.mktemp("unchanged"), spec)

# city_pair and orthophoto_files (shared with the wall's browser test) live in tests/fixtures_drone.py.
