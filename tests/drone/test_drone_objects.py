"""Per-object evidence primitives of drone/objects.py on hand-drawn masks."""

import numpy as np
from scipy import ndimage

from drone.objects import drop_vehicle_pieces
from drone.params import ChangeParams

PARAMS = ChangeParams()


def _rectangle(mask: np.ndarray, row: int, col: int, width_m: float, length_m: float) -> None:
    px = PARAMS.analysis_gsd_m
    mask[row:row + round(length_m / px), col:col + round(width_m / px)] = True


def test_vehicle_sized_pieces_go_and_a_small_shed_stays():
    mask = np.zeros((200, 200), bool)
    _rectangle(mask, 20, 20, 1.8, 4.5)  # a car ...
    _rectangle(mask, 20 + 25, 20, 1.8, 4.5)  # ... and one parked end to end behind it, a 0.5 m gap between
    _rectangle(mask, 100, 20, 2.5, 7.5)  # a truck
    _rectangle(mask, 100, 100, 3.6, 4.2)  # a small shed
    _rectangle(mask, 0, 150, 1.8, 4.5)  # a car-sized piece cut by the array edge: its extent is unknown
    kept = drop_vehicle_pieces(mask, PARAMS)
    labels, n = ndimage.label(kept)
    assert n == 2
    assert kept[100:121, 100:118].all() and kept[0:22, 150:159].all()
    assert not kept[20:70, 20:30].any() and not kept[100:140, 20:33].any()

