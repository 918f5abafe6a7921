"""SYNTHETIC pairs written once per test session (real GeoTIFFs, read back through rasterio)."""

from pathlib import Path

import pytest

from drone.synthetic import SyntheticPairSpec, write_synthetic_pair


@pytest.fixture(scope="session")
def changed_pair(tmp_path_factory):
    spec = SyntheticPairSpec(size_px=3072, seed=3, new_structures=14)
    return spec, write_synthetic_pair(tmp_path_factory.mktemp("changed"), spec)


@pytest.fixture(scope="session")
def unchanged_pair(tmp_path_factory):
    spec = SyntheticPairSpec(size_px=2048, seed=5, plant_changes=False, rotation_deg=0.0, scale=1.0,
                             shift_px=(4.6, -3.3), gain=1.2, offset=-14.0)
    return spec, write_synthetic_pair(tmp_path_factory.mktemp("unchanged"), spec)


@pytest.fixture(scope="session")
def city_pair(tmp_path_factory):
    """A pair inside 宿城区 (321302) of the demo city, away from its registered buildings and water."""
    spec = SyntheticPairSpec(size_px=2048, seed=3, new_structures=8, origin=(618500.0, 3754500.0))
    return spec, write_synthetic_pair(tmp_path_factory.mktemp("city"), spec)


@pytest.fixture(scope="session")
def orthophoto_files(city_db, settings):
    """The managed orthophoto folder the test app writes to; catalogued test files are removed at the end."""
    from drone.ingest import managed_dir
    from gis.db import open_connection

    yield managed_dir(settings)
    with open_connection(city_db) as conn:
        for row in conn.execute("SELECT file_path FROM city.orthophoto"):
            Path(row["file_path"]).unlink(missing_ok=True)

