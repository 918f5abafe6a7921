"""Tunable thresholds of change detection, in ground units so they hold at any GSD."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeParams:
    analysis_gsd_m: float = 0.2  # buildings need no 5 cm detail; 4x coarser keeps per-pixel work 16x smaller
    min_height_m: float = 2.0  # one storey minus DSM noise; sheds of 2.5 m must pass
    min_area_m2: float = 10.0  # a parked car (about 8 m2) must not pass
    rgb_change_sigmas: float = 8.0  # RGB change threshold in residual-noise sigmas of the radiometric fit
    rgb_change_floor_dn: float = 30.0  # never below this (before-scale DN), whatever the noise estimate ...
    rgb_change_cap_dn: float = 60.0  # ... nor above: vignetting and gamma inflate the estimate, a new roof is ~100 DN off
    chroma_change: float = 0.06  # chromaticity shift (R, G or B over R+G+B) that alone counts as change ...
    chroma_min_sum_dn: float = 180.0  # ... where both epochs are brighter than this (R+G+B): dark pixels' colour is noise
    vegetation_exg: float = 0.10  # excess green (2G-R-B)/(R+G+B) above this (and G the top band) is vegetation
    earth_red_blue: tuple[float, float] = (0.06, 0.25)  # (R-B)/(R+G+B) of soil, dry grass, bare branches ...
    ground_max_dn: float = 170.0  # mean DN above which a pixel is too bright for soil, dry grass or lit ground
    earth_red_green_min: float = 0.01  # ... whose red exceeds green (a beige or warm-grey roof's does not) ...
    earth_red_green_max: float = 0.16  # ... but does not dominate it as on red tile
    shadow_ratio: float = 0.6  # one epoch darker than this fraction of the other ...
    shadow_max_dn: float = 100.0  # ... and darker than this in every band ...
    shadow_chroma_tolerance: float = 0.08  # ... and of the same chromaticity: a cast shadow, not a roof
    vehicle_max_width_m: float = 3.5  # an object no wider than a truck (plus the clean-up's margin) ...
    vehicle_max_length_m: float = 9.5  # ... and no longer is a vehicle, not a structure;
    vehicles_max_area_m2: float = 30.0  # so is a small ragged blob (a car that moved beside where it stood) ...
    vehicles_max_rectangularity: float = 0.6  # ... this far from a rectangle: sheds are rectangles or Ls
    vehicle_piece_max_width_m: float = 3.0  # a piece of change this narrow (and no longer than a truck) before the
    # clean-up joins pieces is a vehicle: two parked end to end or side by side stay two pieces
    vehicle_group_max_area_m2: float = 40.0  # an object this small ...
    vehicle_group_colour_spread_dn: float = 35.0  # ... whose after colour spreads this much (std, DN) is vehicles of
    # different colours side by side: a roof is one material
    repaint_edge_ratio: float = 0.25  # RGB-only: an outline whose before colour step is this share of its after step
    outline_min_step_dn: float = 35.0  # ... and at least this (DN; textured grass gives 15-25) existed before ...
    repaint_min_correlation: float = 0.75  # ... around an inside whose brightness pattern persists (correlation of
    # before and after): a repaint of an existing roof, not a new building
    hidden_min_rectangularity: float = 0.82  # an earth-coloured or dark object masked per pixel counts when this
    # rectangular ...
    hidden_max_area_m2: float = 400.0  # ... no larger ...
    hidden_max_elongation: float = 4.0  # ... no longer than this many widths ...
    hidden_max_correlation: float = 0.6  # ... its inside not repeating the before pattern (a shadow or browned grass does)
    hidden_min_step_dn: float = 20.0  # ... and its outline a sharp new step of at least this (DN)
    open_radius_m: float = 0.4
    close_radius_m: float = 0.6
    rectangular_enough: float = 0.8  # area / minimum rotated rectangle area above which outlines become rectangles
    block_px: int = 512  # analysis pixels per block side; the halo is added around it
    workers: int = 2
