from __future__ import annotations

import pytest

from gis.codes import check_component_code, class_of, component_code, grid_code, normalise_grid_code
from gis.errors import InvalidInput


def test_legacy_14_digit_grid_codes_are_widened():
    assert normalise_grid_code("32130200100107") == "321302001001007"
    assert normalise_grid_code(" 321302001001007 ") == "321302001001007"


@pytest.mark.parametrize("bad", ["3213020010010", "32130200100100A", "321302001001000", ""])
def test_bad_grid_codes_say_why(bad):
    with pytest.raises(InvalidInput, match="grid code"):
        normalise_grid_code(bad)


def test_component_codes_compose_and_check():
    code = component_code("321302", "0102", 48188)
    assert code == "3213020102048188" and class_of(code) == "0102"
    assert check_component_code(code) == code
    with pytest.raises(InvalidInput, match="16 digits"):
        check_component_code("32130201020481")
    with pytest.raises(InvalidInput):
        component_code("321302", "0102", 1_000_000)
    assert grid_code("321302001001", 7) == "321302001001007"
