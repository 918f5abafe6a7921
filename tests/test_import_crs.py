"""GCJ-02 and BD-09: the published formulas forward, our numerical inverses back within 0.5 m."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Geod

from gis.source_crs import bd09_to_wgs84, gcj02_to_wgs84, parse_crs, wgs84_to_bd09, wgs84_to_gcj02
from gis.errors import InvalidInput

GEOD = Geod(ellps="GRS80")


def _metres(x1, y1, x2, y2) -> np.ndarray:
    return GEOD.inv(x1, y1, x2, y2)[2]


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(4490)
    # across the municipality of Suqian and across China
    return np.concatenate([rng.uniform(117.9, 119.2, 5000), rng.uniform(75, 134, 5000)]), \
        np.concatenate([rng.uniform(33.1, 34.5, 5000), rng.uniform(18, 53, 5000)])


@pytest.mark.parametrize("forward, inverse", [(wgs84_to_gcj02, gcj02_to_wgs84), (wgs84_to_bd09, bd09_to_wgs84)])
def test_round_trip_within_half_a_metre(points, forward, inverse):
    lng, lat = points
    back = inverse(*forward(lng, lat))
    assert _metres(lng, lat, *back).max() < 0.5


def test_offsets_at_suqian_match_the_published_sizes():
    # ≈530 m for GCJ-02 and ≈1.2 km for BD-09 at the city centre (shared notes, coord-convert)
    gcj = _metres(118.28, 33.96, *wgs84_to_gcj02(118.28, 33.96))
    bd = _metres(118.28, 33.96, *wgs84_to_bd09(118.28, 33.96))
    assert 480 < gcj < 580 and 1100 < bd < 1350


def test_outside_china_is_left_alone():
    assert wgs84_to_gcj02(24.94, 60.17) == (24.94, 60.17)


def test_parse_crs():
    assert parse_crs("GCJ-02").is_offset and parse_crs("bd09").name == "bd09"
    assert parse_crs("EPSG:4548").crs.to_epsg() == 4548
    with pytest.raises(InvalidInput, match="unknown coordinate system"):
        parse_crs("EPSG:999999")
