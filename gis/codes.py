"""GB/T 30428 codes: unit grids (15 digits) and components (16 digits), checked and normalised.

The database enforces the same rules with CHECK constraints; these functions give the reason
in words before a row is sent, and widen the older 14-digit CJ/T 213-2005 grid codes.
"""

from __future__ import annotations

import re

from gis.errors import InvalidInput

GRID_CODE = re.compile(r"^[0-9]{15}$")
LEGACY_GRID_CODE = re.compile(r"^[0-9]{14}$")
COMPONENT_CODE = re.compile(r"^[0-9]{16}$")


def normalise_grid_code(code: str) -> str:
    """A 15-digit unit-grid code; a 14-digit CJ/T 213-2005 code gets its 2-digit sequence widened to 3."""
    code = code.strip()
    if LEGACY_GRID_CODE.match(code):
        code = code[:12] + "0" + code[12:]
    if not GRID_CODE.match(code):
        raise InvalidInput(f"unit-grid code {code!r} must have 15 digits (GB/T 30428.1) or 14 (CJ/T 213-2005)")
    if code.endswith("000"):
        raise InvalidInput(f"unit-grid code {code!r} has sequence 000; grid numbers start at 001")
    return code


def grid_code(community_code: str, sequence: int) -> str:
    if not 1 <= sequence <= 999:
        raise InvalidInput(f"grid sequence {sequence} is outside 1–999 within community {community_code}")
    return f"{community_code}{sequence:03d}"


def component_code(district_code: str, class_code: str, serial: int) -> str:
    if not 1 <= serial <= 999_999:
        raise InvalidInput(f"component serial {serial} is outside 1–999999 for class {class_code}")
    return f"{district_code}{class_code}{serial:06d}"


def check_component_code(code: str) -> str:
    code = code.strip()
    if not COMPONENT_CODE.match(code):
        raise InvalidInput(
            f"component code {code!r} must have 16 digits: county 6 + major class 2 + minor class 2 + serial 6"
        )
    if code.endswith("000000"):
        raise InvalidInput(f"component code {code!r} has serial 000000; serials start at 000001")
    return code


def class_of(component: str) -> str:
    return component[6:10]
