"""SYNTHETIC drone orthophoto/DSM pairs with known ground truth, for tests and benchmarks only (not shipped).

No real drone pair with ground truth exists offline, so this paints a procedural aerial scene
(grass/soil ground, roads, roofs, trees, vehicles, cast shadows) in CGCS2000 / 3-degree
Gauss-Krüger CM 117E (EPSG:4548) near Suqian, and an "after" epoch that differs the way real
flights differ. Every condition is a field of `SceneSpec` and can be switched on alone
(`CONDITIONS[name]`) or all at once (`CONDITIONS["all"]`):

- season: leaf-on trees and green grass before, leaf-off canopies (bare branches over ground,
  lower DSM) and brown grass after;
- sun: azimuth/elevation per epoch; shadows are cast from each object's height;
- exposure: gain, offset, per-band white balance, gamma and per-frame vignetting of the after epoch;
- misregistration: shift (m), rotation and scale of the after georeference;
- GSD: before and after rendered at their own pixel size (0.08 vs 0.12 m);
- partial overlap: the after footprint moved east by a fraction of the extent;
- vehicles: parked cars and trucks, some of which moved between the flights;
- DSM: vertical bias and tilt of the after DSM, voids (nodata) in both;
- JPEG: orthophotos written JPEG-compressed (YCbCr);
- CRS: the after epoch delivered in UTM 50N (EPSG:32650).

The scene itself varies with the seed: roof palette and texture, building sizes and L-shapes,
tree cover, road spacing and angle.

TUNING_SEEDS are the only seeds the detector's thresholds were looked at on; HELD_OUT_SEEDS are
used by the tests and the benchmark's held-out rows and were never tuned on (but their RGB-only
failures were seen, so FRESH_HELD_OUT_SEEDS hold the blind figures).

Everything is rendered block by block from vector objects and periodic noise tiles, so a large
pair is written to disk without being held in memory (except the CRS condition, which reprojects
the finished after raster).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box, mapping

TUNING_SEEDS = tuple(range(0, 10))  # thresholds were chosen looking at these only
HELD_OUT_SEEDS = tuple(range(100, 120))  # tests and benchmark rows; never tuned on
# Seeds 100-120 were LOOKED AT while the RGB-only weak spots were diagnosed (issue 14, session 2): they
# are no longer blind. FRESH_HELD_OUT_SEEDS were declared before any further tuning and are run only
# once, for the final figures; tuning of the RGB-only detector looks at TUNING_SEEDS only.
FRESH_HELD_OUT_SEEDS = tuple(range(200, 220))
# The first run on FRESH_HELD_OUT_SEEDS showed the radiometric consensus locking onto a line through one
# dense class on some all-conditions pairs (seeds 100 and 200); before that was fixed, LATE_HELD_OUT_SEEDS
# were declared for the blind figures of the fix.
LATE_HELD_OUT_SEEDS = tuple(range(300, 320))
# Issue 14's RGB-only hard cases (vehicles end to end, earth-coloured / dark-grey roofs, roofs in an old
# shadow, repainted roofs): declared before any of them was painted or tuned on (session 3, 2026-11-30);
# run once only, for the final figures. Tuning looks at TUNING_SEEDS only; the hard-case tests use
# HELD_OUT_SEEDS.
BLIND_2026_11_30_SEEDS = tuple(range(400, 420))

CRS_EPSG = 4548  # CGCS2000 / 3-degree Gauss-Kruger CM 117E
SUQIAN_ORIGIN = (618300.0, 3759960.0)  # 118.28E 33.96N projected, rounded to whole metres
SHADOW_FACTOR = 0.42
RENDER_BLOCK = 1024
SCENE_FILE_FORMAT = 2  # in the cache key: 2 = with internal overviews (a cached pair without them is stale)
VIGNETTE_FRAME_M = 30.0  # ground footprint of one drone frame in the mosaic

GRASS, DRY_GRASS = np.array([88, 118, 62], np.float32), np.array([138, 124, 84], np.float32)
SOIL = np.array([150, 128, 100], np.float32)
ROAD = np.array([96, 96, 100], np.float32)
ROOF_FAMILIES = np.array(
    [[70, 120, 190], [225, 225, 220], [160, 160, 155], [170, 75, 60], [200, 205, 210], [60, 140, 170],
     [110, 110, 118]], np.float32
)  # blue colour-steel (彩钢瓦), white, concrete grey, red tile, light steel, teal steel, dark grey
TREE, BARE_BRANCHES = np.array([45, 95, 40], np.float32), np.array([98, 88, 76], np.float32)
CAR_PALETTE = np.array([[30, 30, 35], [230, 230, 230], [150, 30, 30], [120, 125, 130]], np.float32)
CAR, TRUCK = (1.8, 4.5, 1.5), (2.5, 7.5, 3.2)  # width, length, height m


@dataclass(frozen=True)
class SceneSpec:
    """Parameters of one SYNTHETIC pair. Acquisition effects apply to the after epoch only."""

    size_px: int = 800  # before raster side
    gsd_m: float = 0.08
    after_gsd_m: float | None = None  # None: same as before
    seed: int = 0
    new_structures: int | None = None  # default: about 4 per hectare, at least 6
    plant_changes: bool = True  # new structures (the positives)
    distractors: bool = True  # new shrubs, bare-soil patches, moved vehicles: never to be reported
    moved_vehicles: int = 0
    season_change: bool = False
    sun_before: tuple[float, float] = (135.0, 55.0)  # azimuth, elevation degrees
    sun_after: tuple[float, float] = (135.0, 55.0)
    shift_m: tuple[float, float] = (0.0, 0.0)  # (east, north) error of the after georeference
    rotation_deg: float = 0.0
    scale: float = 1.0
    gain: float = 1.0
    offset: float = 0.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 1.0
    vignetting: float = 0.0  # brightness loss at a frame's corner
    noise_sigma: float = 2.0
    overlap_shift: float = 0.0  # after footprint moved east by this fraction of the extent
    with_dsm: bool = True
    dsm_gsd_m: float = 0.2
    dsm_bias_m: float = 0.0
    dsm_tilt: float = 0.0  # after DSM slope, m per m eastwards
    dsm_voids: float = 0.0  # share of each DSM that is nodata
    jpeg_quality: int | None = None
    after_epsg: int = CRS_EPSG
    origin: tuple[float, float] = SUQIAN_ORIGIN  # top-left corner, EPSG:4548 metres
    hard_cases: tuple[str, ...] = ()  # names of HARD_CASES painted on top of the scene

    def key(self) -> str:
        """A digest of every field: a cache of generated pairs must be keyed on all of them."""
        fields = dataclasses.asdict(self) | {"file_format": SCENE_FILE_FORMAT}
        if not self.hard_cases:  # pairs cached before hard cases existed keep their key
            del fields["hard_cases"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


CONDITIONS: dict[str, dict] = {
    "baseline": {},
    "season": dict(season_change=True),
    "sun": dict(sun_after=(225.0, 33.0)),
    "exposure": dict(gain=1.15, offset=-8.0, white_balance=(1.06, 1.0, 0.9), gamma=0.9, vignetting=0.2),
    "misregistration": dict(shift_m=(2.4, -1.8), rotation_deg=1.0, scale=1.01),
    "gsd": dict(after_gsd_m=0.12),
    "partial_overlap": dict(overlap_shift=0.4),
    "vehicles": dict(moved_vehicles=6),
    "dsm_bias_voids": dict(dsm_bias_m=0.3, dsm_tilt=0.002, dsm_voids=0.03),
    "jpeg": dict(jpeg_quality=75),
    "crs": dict(after_epsg=32650),
}
CONDITIONS["all"] = {k: v for name, c in CONDITIONS.items() if name not in ("crs",) for k, v in c.items()}


# RGB-only hard cases (issue 14), painted on top of any condition with their own random stream, so a
# seed's scene is otherwise unchanged. Cases ending in "_distractors" add things never to be reported.
HARD_CASES = {
    "vehicle_pairs_distractors": "cars parked end to end or side by side, a car beside a truck (after epoch only); "
                                 "and two small new sheds that must still be found",
    "earthy_roofs": "new roofs coloured like bare soil, dry grass or asphalt (brown, khaki, dark grey)",
    "roofs_in_old_shadow": "new roofs built where a tall existing building cast its shadow in the before flight",
    "repainted_roofs_distractors": "existing roofs repainted another colour in the after flight (same outline)",
}
EARTHY_ROOFS = np.array([[150, 128, 100], [138, 124, 84], [128, 106, 84], [78, 78, 82], [62, 64, 68]], np.float32)


def scene_spec(condition: str, **fields) -> SceneSpec:
    return SceneSpec(**(CONDITIONS[condition] | fields))


@dataclass
class ScenePair:
    before_rgb: Path
    after_rgb: Path
    before_dsm: Path | None
    after_dsm: Path | None
    truth: list[Polygon]  # new-structure footprints wholly inside both footprints, EPSG:4548 metres
    ignore: list[Polygon]  # new structures cut by an epoch's edge: detecting them or not is neither right nor wrong
    truth_heights: list[float]
    true_correction: Affine  # world affine that maps the after georeference onto the truth (EPSG:4548 only)
    overlap: Polygon
    truth_geojson: Path
    hard: dict[str, list[Polygon]] | None = None  # hard case -> its truth footprints, or its distractors' footprints


@dataclass
class _Scene:
    roads: list[Polygon] = field(default_factory=list)
    roofs: list[Polygon] = field(default_factory=list)
    roof_heights: list[float] = field(default_factory=list)
    roof_colours: list[np.ndarray] = field(default_factory=list)
    roof_textures: list[tuple[int, float, float]] = field(default_factory=list)  # kind, frequency, direction
    trees: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, r, h
    soil_patches: list[Polygon] = field(default_factory=list)  # after epoch only
    vehicles: dict[str, list[tuple[Polygon, float, int]]] = field(default_factory=dict)  # epoch -> footprint, h, colour
    new_start: int = 0  # roofs[new_start:] exist in the after epoch only
    tree_new_start: int = 0
    after_colours: dict[int, np.ndarray] = field(default_factory=dict)  # roof index -> colour repainted by the after epoch
    hard: dict[str, list[Polygon]] = field(default_factory=dict)

    def index(self, suns: dict[str, tuple[float, float]]) -> None:
        """Precompute shadows per epoch and spatial indexes so each block only burns what it overlaps."""
        self.discs = [Point(x, y).buffer(r) for x, y, r, _ in self.trees]
        self.trees_arr = np.array([(0, 0, 1, 0)] + self.trees, np.float64)  # row 0: dummy for "no tree"
        self.shadows = {}
        for epoch, sun in suns.items():
            roofs = self.roofs if epoch == "after" else self.roofs[:self.new_start]
            trees = range(len(self.trees)) if epoch == "after" else range(self.tree_new_start)
            leaf_factor = 0.45 if epoch == "after" and self.leaf_off else 1.0
            shadows = [_shadow(p, h, sun) for p, h in zip(roofs, self.roof_heights)]
            shadows += [_shadow(self.discs[i], self.trees[i][3] * leaf_factor, sun) for i in trees]
            shadows += [_shadow(v, h, sun) for v, h, _ in self.vehicles[epoch]]
            self.shadows[epoch] = shapely.STRtree(shadows) if shadows else None
            self.shadows[epoch + "_list"] = shadows
        self._trees = {name: shapely.STRtree(geoms) for name, geoms in (
            ("roads", self.roads), ("roofs", self.roofs), ("discs", self.discs),
            ("soil", self.soil_patches)) if geoms}
        self._vehicles = {e: shapely.STRtree([v for v, _, _ in vs]) for e, vs in self.vehicles.items() if vs}

    def visible(self, kind: str, epoch: str, area: Polygon) -> np.ndarray:
        """Indices of objects of one kind that exist in the epoch and overlap the block."""
        if kind == "shadows":
            tree = self.shadows[epoch]
            return np.zeros(0, int) if tree is None else np.sort(tree.query(area))
        if kind == "vehicles":
            tree = self._vehicles.get(epoch)
            return np.zeros(0, int) if tree is None else np.sort(tree.query(area))
        if kind not in self._trees:
            return np.zeros(0, int)
        ids = np.sort(self._trees[kind].query(area))
        if epoch == "after" or kind == "roads":
            return ids
        if kind == "roofs":
            return ids[ids < self.new_start]
        if kind == "discs":
            return ids[ids < self.tree_new_start]
        return np.zeros(0, int)  # soil patches appear in the after epoch


class _SpatialHash:
    """Coarse grid of placed footprints: placement checks stay local instead of O(n^2)."""

    def __init__(self, cell: float = 40.0):
        self.cell, self.cells = cell, {}

    def _keys(self, g):
        x0, y0, x1, y1 = g.bounds
        return [(i, j) for i in range(int(x0 // self.cell), int(x1 // self.cell) + 1)
                for j in range(int(y0 // self.cell), int(y1 // self.cell) + 1)]

    def hits(self, g) -> bool:
        return any(g.intersects(o) for k in self._keys(g) for o in self.cells.get(k, ()))

    def add(self, g) -> None:
        for k in self._keys(g):
            self.cells.setdefault(k, []).append(g)


def write_scene_pair(out_dir: str | Path, spec: SceneSpec = SceneSpec(), *, workers: int = 2) -> ScenePair:
    """Write a SYNTHETIC before/after pair (RGB and optional DSM GeoTIFFs) plus truth GeoJSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    extent = spec.size_px * spec.gsd_m
    x0, y1 = spec.origin
    before_box = box(x0, y1 - extent, x0 + extent, y1)
    after_box = affinity.translate(before_box, spec.overlap_shift * extent, 0)
    scene = _layout_scene(rng, shapely.union(before_box, after_box).bounds, spec)
    scene.leaf_off = spec.season_change
    scene.index({"before": spec.sun_before, "after": spec.sun_after})
    tiles = _noise_tiles(spec.seed)
    misregistration = _misregistration(spec, after_box.bounds)
    after_gsd = spec.after_gsd_m or spec.gsd_m

    paths = {}
    for epoch, footprint, gsd, world_of_georef in (("before", before_box, spec.gsd_m, Affine.identity()),
                                                   ("after", after_box, after_gsd, misregistration)):
        left, top = footprint.bounds[0], footprint.bounds[3]
        size = int(round(extent / gsd))
        paths[f"{epoch}_rgb"] = out / f"scene_{epoch}_rgb.tif"
        _write_raster(paths[f"{epoch}_rgb"], size, Affine(gsd, 0, left, 0, -gsd, top), world_of_georef,
                      lambda tf, shape, e=epoch: _render_rgb(scene, tiles, tf, shape, e, spec),
                      count=3, dtype="uint8", nodata=None, workers=workers, jpeg_quality=spec.jpeg_quality)
        paths[f"{epoch}_dsm"] = None
        if spec.with_dsm:
            dsm_px = int(round(extent / spec.dsm_gsd_m))
            paths[f"{epoch}_dsm"] = out / f"scene_{epoch}_dsm.tif"
            _write_raster(paths[f"{epoch}_dsm"], dsm_px, Affine(spec.dsm_gsd_m, 0, left, 0, -spec.dsm_gsd_m, top),
                          world_of_georef, lambda tf, shape, e=epoch: _render_dsm(scene, tiles, tf, shape, e, spec),
                          count=1, dtype="float32", nodata=-9999.0, workers=workers)
    if spec.after_epsg != CRS_EPSG:
        for name in ("after_rgb", "after_dsm"):
            if paths[name] is not None:
                _reproject_in_place(paths[name], spec.after_epsg, after_gsd if name == "after_rgb" else spec.dsm_gsd_m)

    # the after footprint on the ground is where its (misregistered) georeference truly looks
    seen_after = affinity.affine_transform(after_box, [misregistration.a, misregistration.b, misregistration.d,
                                                       misregistration.e, misregistration.c, misregistration.f])
    overlap = shapely.intersection(before_box, seen_after).buffer(-1.0)
    new = list(zip(scene.roofs[scene.new_start:], scene.roof_heights[scene.new_start:]))
    truth = [(p, h) for p, h in new if overlap.contains(p)]
    ignore = [p for p, _ in new if not overlap.contains(p) and overlap.buffer(1.0).intersects(p)]
    hard = {case: [p for p in footprints if overlap.contains(p)] for case, footprints in scene.hard.items()}
    truth_path = out / "scene_truth.geojson"
    truth_path.write_text(json.dumps({
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{CRS_EPSG}"}},
        "features": [{"type": "Feature", "geometry": mapping(p), "properties": {"height_m": h, "role": "truth"}}
                     for p, h in truth] + [{"type": "Feature", "geometry": mapping(p), "properties": {"role": "ignore"}}
                                           for p in ignore]
                    + [{"type": "Feature", "geometry": mapping(p), "properties": {"role": f"hard case {case}"}}
                       for case, footprints in hard.items() for p in footprints],
    }))
    return ScenePair(paths["before_rgb"], paths["after_rgb"], paths["before_dsm"], paths["after_dsm"],
                     [p for p, _ in truth], ignore, [h for _, h in truth], misregistration, overlap, truth_path, hard)


def read_truth(path: Path) -> tuple[list[Polygon], list[Polygon]]:
    """(truth, ignore) footprints from a pair's truth GeoJSON."""
    from shapely.geometry import shape

    features = json.loads(Path(path).read_text())["features"]
    return ([shape(f["geometry"]) for f in features if f["properties"]["role"] == "truth"],
            [shape(f["geometry"]) for f in features if f["properties"]["role"] == "ignore"])


def _misregistration(spec: SceneSpec, bounds) -> Affine:
    """World affine S: after pixel u truly shows world point S(T_after(u)); rotation/scale about the centre."""
    cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    shift = Affine.translation(*spec.shift_m)
    about_centre = (Affine.translation(cx, cy) @ Affine.rotation(spec.rotation_deg)
                    @ Affine.scale(spec.scale) @ Affine.translation(-cx, -cy))
    return shift @ about_centre


def _layout_scene(rng: np.random.Generator, bounds, spec: SceneSpec) -> _Scene:
    xmin, ymin, xmax, ymax = bounds
    width, height = xmax - xmin, ymax - ymin
    area_ha = width * height / 1e4
    angle = rng.uniform(-25, 25)
    centre = ((xmin + xmax) / 2, (ymin + ymax) / 2)
    scene = _Scene()
    span = max(width, height)

    spacing = rng.uniform(55, 110)
    for offset in np.arange(-span, span, spacing) + rng.uniform(0, spacing):
        for along_x in (True, False):
            line = LineString([(-span, offset), (span, offset)] if along_x else [(offset, -span), (offset, span)])
            line = affinity.translate(affinity.rotate(line, angle, origin=(0, 0)), *centre)
            scene.roads.append(line.buffer(rng.uniform(3, 5), cap_style="flat"))
    roads = shapely.union_all(scene.roads).buffer(2.0)
    shapely.prepare(roads)
    inside = box(*bounds).buffer(-1.0)
    shapely.prepare(inside)
    placed_so_far = _SpatialHash()

    def place(n, make, spacing_m):
        placed = []
        for _ in range(n * 30):
            if len(placed) == n:
                break
            geom = make(rng.uniform(xmin, xmax), rng.uniform(ymin, ymax))
            if roads.intersects(geom) or not inside.contains(geom) or placed_so_far.hits(geom):
                continue
            placed.append(geom)
            placed_so_far.add(geom.buffer(spacing_m))
        return placed

    def building(w_range, l_range, l_shape_share):
        def make(cx, cy):
            w, l = rng.uniform(*w_range), rng.uniform(*l_range)
            footprint = box(cx - w / 2, cy - l / 2, cx + w / 2, cy + l / 2)
            if rng.random() < l_shape_share:  # an L: a wing along one side
                wing_w, wing_l = rng.uniform(0.35, 0.6) * w, rng.uniform(0.4, 0.8) * l
                footprint = shapely.union(footprint, box(cx + w / 2 - 0.01, cy - l / 2, cx + w / 2 + wing_l,
                                                         cy - l / 2 + wing_w)).simplify(0.05)
            return affinity.rotate(footprint, angle + rng.normal(0, 3), origin=(cx, cy))
        return make

    palette = ROOF_FAMILIES[rng.permutation(len(ROOF_FAMILIES))[:rng.integers(3, 6)]]
    l_share = rng.uniform(0.0, 0.4)
    existing = place(max(2, int(area_ha * rng.uniform(3, 7))), building((8, 22), (8, 26), l_share), 3.0)
    # New footprints are reserved before trees whether planted or not, so the unchanged pair of a
    # seed is the same scene as its changed pair.
    new = place(spec.new_structures or max(6, int(round(area_ha * 4))), building((4, 14), (4, 18), l_share), 4.0)
    new_heights = list(rng.uniform(2.5, 10, len(new)))
    tree_density = rng.uniform(6, 25)
    trees = place(max(4, int(area_ha * tree_density)), lambda cx, cy: Point(cx, cy).buffer(rng.uniform(1.5, 4.5)), 1.0)
    shrubs = place(max(2, int(area_ha * 3)), lambda cx, cy: Point(cx, cy).buffer(rng.uniform(1.0, 2.5)), 1.0)
    soil = place(max(2, int(area_ha * 2)), lambda cx, cy: _blob(rng, cx, cy, rng.uniform(3, 7)), 1.0)
    parked = _vehicles_on_roads(rng, scene.roads, bounds, angle, max(2, int(area_ha * 4)) + spec.moved_vehicles)
    arrived = _vehicles_on_roads(rng, scene.roads, bounds, angle, spec.moved_vehicles)

    scene.roofs += existing
    scene.roof_heights += list(rng.uniform(3, 15, len(existing)))
    scene.trees += [_tree(t, h) for t, h in zip(trees, rng.uniform(4, 12, len(trees)))]
    scene.new_start, scene.tree_new_start = len(scene.roofs), len(scene.trees)
    if spec.plant_changes:
        scene.roofs += new
        scene.roof_heights += new_heights
    if spec.distractors:
        scene.trees += [_tree(s, h) for s, h in zip(shrubs, rng.uniform(1.5, 4, len(shrubs)))]
        scene.soil_patches = soil
    stay = parked[:len(parked) - spec.moved_vehicles]
    scene.vehicles = {"before": parked, "after": stay + (arrived if spec.distractors else parked[len(stay):])}
    n = len(existing) + len(new)
    scene.roof_colours = list(palette[rng.integers(0, len(palette), n)] + rng.normal(0, 8, (n, 3)))[:len(scene.roofs)]
    scene.roof_textures = [(int(k), float(f), float(d)) for k, f, d in
                           zip(rng.integers(0, 3, n), rng.uniform(5, 12, n), rng.uniform(0, np.pi, n))][:len(scene.roofs)]
    if spec.hard_cases:
        _paint_hard_cases(np.random.default_rng([spec.seed, 14]), scene, bounds, angle, palette, spec)
    return scene


def _paint_hard_cases(rng: np.random.Generator, scene: _Scene, bounds, angle: float, palette, spec: SceneSpec) -> None:
    """Add HARD_CASES to a laid-out scene; `scene.hard` keeps each case's footprints for scoring."""
    unknown = set(spec.hard_cases) - set(HARD_CASES)
    if unknown:
        raise ValueError(f"unknown hard cases {sorted(unknown)}; known: {sorted(HARD_CASES)}")
    roads = shapely.union_all(scene.roads)
    taken = [roads.buffer(2.0), *scene.roofs, *scene.soil_patches]
    trees = [Point(x, y).buffer(r) for x, y, r, _ in scene.trees]
    inside = box(*bounds).buffer(-3.0)

    def free(geom, margin: float, trees_give_way: bool = False) -> bool:
        grown = geom.buffer(margin)
        if trees_give_way:  # a tower: it may stand at the kerb or beyond the frame, trees are felled for it
            return not any(grown.intersects(t) for t in [roads, *taken[1:]])
        return inside.contains(geom) and not any(grown.intersects(t) for t in taken + trees)

    def add_roofs(roofs, heights, existing: bool):
        at = scene.new_start if existing else len(scene.roofs)
        for i, (p, h) in enumerate(zip(roofs, heights)):
            scene.roofs.insert(at + i, p)
            scene.roof_heights.insert(at + i, float(h))
            scene.roof_colours.insert(at + i, palette[rng.integers(0, len(palette))] + rng.normal(0, 8, 3))
            scene.roof_textures.insert(at + i, (int(rng.integers(0, 3)), float(rng.uniform(5, 12)),
                                                float(rng.uniform(0, np.pi))))
            taken.append(p)
        if existing:
            scene.new_start += len(roofs)

    if "earthy_roofs" in spec.hard_cases and spec.plant_changes:
        scene.hard["earthy_roofs"] = []
        for i in range(scene.new_start, len(scene.roofs)):
            if rng.random() < 0.7:
                scene.roof_colours[i] = EARTHY_ROOFS[rng.integers(0, len(EARTHY_ROOFS))] + rng.normal(0, 5, 3)
                scene.hard["earthy_roofs"].append(scene.roofs[i])
    if "roofs_in_old_shadow" in spec.hard_cases and spec.plant_changes:
        azimuth, elevation = spec.sun_before
        toward_sun = np.array([math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))])
        towers, heights, shaded = [], [], []
        across = np.array([toward_sun[1], -toward_sun[0]])
        for i in rng.permutation(np.arange(scene.new_start, len(scene.roofs))):
            roof = scene.roofs[i]
            c = np.array(roof.centroid.coords[0])
            corners = np.asarray(roof.exterior.coords) - c
            half, half_across = float(np.abs(corners @ toward_sun).max()), float(np.abs(corners @ across).max())
            # a tall slab on the roof's sunny side, wide enough that its shadow covers the whole roof
            depth, gap = rng.uniform(3, 6), rng.uniform(0.8, 2.0)
            at = c + toward_sun * (half + gap + depth / 2)
            corners = [at + u * toward_sun * depth / 2 + v * across * (half_across + 1.5) for u, v in
                       ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            tower = Polygon(corners)
            height = (gap + 2 * half + 1.5) * math.tan(math.radians(elevation))
            taken.remove(roof)  # the roof stands next to its tower
            if height <= 45 and free(tower, 0.3, trees_give_way=True):
                towers.append(tower)
                heights.append(height)
                shaded.append(roof)
            taken.append(roof)
            if len(towers) == 2:
                break
        felled = {j for j, (x, y, r, _) in enumerate(scene.trees) if any(t.intersects(Point(x, y).buffer(r + 0.3))
                                                                            for t in towers)}
        scene.tree_new_start -= sum(j < scene.tree_new_start for j in felled)
        scene.trees = [t for j, t in enumerate(scene.trees) if j not in felled]
        add_roofs(towers, heights, existing=True)
        scene.hard["roofs_in_old_shadow"] = shaded
    if "repainted_roofs_distractors" in spec.hard_cases:
        picks = rng.permutation(scene.new_start)[:3]
        for i in picks:
            scene.after_colours[int(i)] = palette[rng.integers(0, len(palette))] + rng.normal(0, 30, 3)
        scene.hard["repainted_roofs_distractors"] = [scene.roofs[int(i)] for i in picks]
    if "vehicle_pairs_distractors" in spec.hard_cases:
        _paint_vehicle_pairs(rng, scene, roads, bounds, angle)
        if spec.plant_changes:
            sheds = []
            for _ in range(400):
                w, l = rng.uniform(3.5, 5.0), rng.uniform(4.0, 6.0)
                cx, cy = rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])
                shed = affinity.rotate(box(cx - w / 2, cy - l / 2, cx + w / 2, cy + l / 2), angle, origin=(cx, cy))
                if free(shed, 2.0):
                    sheds.append(shed)
                    taken.append(shed)
                if len(sheds) == 2:
                    break
            add_roofs(sheds, rng.uniform(2.5, 3.5, len(sheds)), existing=False)
            scene.hard["small_sheds"] = sheds


def _paint_vehicle_pairs(rng: np.random.Generator, scene: _Scene, roads, bounds, angle: float) -> None:
    """Vehicles arrived in pairs on the roads: two cars end to end or side by side, a car and a truck end to end."""
    road_inside = shapely.intersection(roads, box(*bounds).buffer(-5))
    parked = [v for v, _, _ in scene.vehicles["before"] + scene.vehicles["after"]]
    pairs = []
    for kind in ("end to end", "side by side", "car and truck", "end to end", "side by side")[:3 + int(rng.integers(0, 3))]:
        first, second = CAR, TRUCK if kind == "car and truck" else CAR
        for _ in range(200):
            gap = rng.uniform(0.3, 1.0)
            cx, cy = rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])
            one = box(cx - first[0] / 2, cy - first[1] / 2, cx + first[0] / 2, cy + first[1] / 2)
            if kind == "side by side":
                two = affinity.translate(box(0, 0, second[0], second[1]), cx + first[0] / 2 + gap, cy - first[1] / 2)
            else:
                two = affinity.translate(box(0, 0, second[0], second[1]), cx - second[0] / 2, cy + first[1] / 2 + gap)
            turn = angle + 90 * int(rng.integers(0, 2))
            one, two = (affinity.rotate(g, turn, origin=(cx, cy)) for g in (one, two))
            both = shapely.union(one, two)
            if road_inside.contains(both) and not any(both.buffer(0.5).intersects(v) for v in parked):
                for g, size in ((one, first), (two, second)):
                    scene.vehicles["after"].append((g, size[2], int(rng.integers(0, len(CAR_PALETTE)))))
                parked += [one, two]
                pairs.append(shapely.convex_hull(both))
                break
    scene.hard["vehicle_pairs_distractors"] = pairs


def _blob(rng, cx, cy, r) -> Polygon:
    """An irregular patch (bare soil, a dug-up lawn): a star-shaped outline with random radii."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    radii = r * np.clip(1 + 0.35 * ndimage.gaussian_filter1d(rng.standard_normal(16), 1.5, mode="wrap") * 2, 0.4, 1.6)
    return Polygon(np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)]))


def _tree(disc: Polygon, height: float) -> tuple[float, float, float, float]:
    return disc.centroid.x, disc.centroid.y, math.sqrt(disc.area / math.pi), float(height)


def _vehicles_on_roads(rng, roads, bounds, angle, n) -> list[tuple[Polygon, float, int]]:
    road_union = shapely.intersection(shapely.union_all(roads), box(*bounds).buffer(-5))
    out = []
    for _ in range(n * 50):
        if len(out) == n:
            break
        w, l, h = TRUCK if rng.random() < 0.35 else CAR
        cx, cy = rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])
        footprint = affinity.rotate(box(cx - w / 2, cy - l / 2, cx + w / 2, cy + l / 2),
                                    angle + 90 * rng.integers(0, 2), origin=(cx, cy))
        if road_union.contains(footprint):
            out.append((footprint, h, int(rng.integers(0, len(CAR_PALETTE)))))
    return out


def _shadow(footprint: Polygon, height: float, sun: tuple[float, float]) -> Polygon:
    azimuth, elevation = sun
    length = height / math.tan(math.radians(elevation))
    away = math.radians(azimuth + 180)
    moved = affinity.translate(footprint, length * math.sin(away), length * math.cos(away))
    return shapely.convex_hull(shapely.union(footprint, moved)).difference(footprint)


def _noise_tiles(seed: int) -> dict[str, np.ndarray]:
    """Small periodic noise tiles; sampled at incommensurate scales the sum does not repeat."""
    rng = np.random.default_rng(seed + 1000)
    tiles = {}
    for name, sigma in (("fine", 1.0), ("medium", 3.0), ("low", 6.0)):
        t = ndimage.gaussian_filter(rng.standard_normal((512, 512)).astype(np.float32), sigma, mode="wrap")
        tiles[name] = (t - t.mean()) / t.std()
    return tiles


TEXEL_M = {"fine": 0.05, "medium": 0.37, "low": 7.3}


def _sample(tiles, name, x, y, shift=0.0):
    scale = TEXEL_M[name]
    return ndimage.map_coordinates(tiles[name], [y / scale + shift, x / scale + shift], order=1, mode="grid-wrap")


def _pixel_centres(transform: Affine, shape) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64) + 0.5
    a, b, c, d, e, f = transform[:6]
    return a * cols + b * rows + c, d * cols + e * rows + f


def _block_area(transform: Affine, shape) -> Polygon:
    h, w = shape
    return Polygon([transform @ (c, r) for c, r in ((0, 0), (w, 0), (w, h), (0, h))])


def _burn(shapes, transform, shape, dtype="int32"):
    shapes = list(shapes)
    if not shapes:
        return np.zeros(shape, dtype)
    return rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype=dtype)


def _tree_canopy(scene: _Scene, epoch, area, x, y, transform, shape):
    """Tree id per pixel, the canopy dome (1 at the trunk, 0 at the rim) and the tree height."""
    ids = _burn(((scene.discs[i], i + 1) for i in scene.visible("discs", epoch, area)), transform, shape)
    t = scene.trees_arr[ids]
    dome = np.sqrt(np.clip(1 - (np.hypot(x - t[..., 0], y - t[..., 1]) / t[..., 2]) ** 2, 0, 1))
    return ids, dome.astype(np.float32), t[..., 3].astype(np.float32)


def _block_rng(seed: int, transform: Affine, epoch: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(abs(transform.c) * 100) % 2**31, int(abs(transform.f) * 100) % 2**31,
                                  int(epoch == "after")])


def _roof_texture(kind: int, frequency: float, direction: float, x, y, fine):
    along = x * math.cos(direction) + y * math.sin(direction)
    if kind == 0:  # corrugated steel
        return 1 + 0.05 * np.sin(along * frequency * 2) + 0.03 * fine
    if kind == 1:  # tile rows
        return 1 + 0.08 * (np.sin(along * frequency) > 0.6) - 0.04 + 0.05 * fine
    return 1 + 0.06 * fine  # flat concrete / membrane


def _render_rgb(scene: _Scene, tiles, transform: Affine, shape, epoch: str, spec: SceneSpec):
    area = _block_area(transform, shape)
    x, y = _pixel_centres(transform, shape)
    fine, medium, low = (_sample(tiles, n, x, y) for n in ("fine", "medium", "low"))
    dry = epoch == "after" and spec.season_change
    soil_share = np.clip(low * 1.5 + 0.5, 0, 1)[..., None]
    grass = DRY_GRASS if dry else GRASS
    ground = (grass * (1 - soil_share) + SOIL * soil_share) * (1 + 0.12 * medium + 0.10 * fine)[..., None]
    rgb = ground.copy()
    patch = _burn(((scene.soil_patches[i], 1) for i in scene.visible("soil", epoch, area)), transform, shape) > 0
    rgb[patch] = SOIL * (1 + 0.15 * medium[patch] + 0.1 * fine[patch])[:, None]

    road = _burn(((scene.roads[i], 1) for i in scene.visible("roads", epoch, area)), transform, shape) > 0
    rgb[road] = ROAD * (1 + 0.06 * fine[road] + 0.03 * medium[road])[:, None]
    shadow_list = scene.shadows[epoch + "_list"]
    in_shadow = _burn(((shadow_list[i], 1) for i in scene.visible("shadows", epoch, area)), transform, shape) > 0

    roof_id = _burn(((scene.roofs[i], i + 1) for i in scene.visible("roofs", epoch, area)), transform, shape)
    on_roof = roof_id > 0
    for i in np.unique(roof_id[on_roof]):
        here = roof_id == i
        # hard-case scenes give roofs their own fine noise: a roof repeating the ground's pattern (as every
        # roof of the older scenes, kept for their cache keys) is a generator artefact no flight shows
        roof_fine = _sample(tiles, "fine", x[here], y[here], 211.37) if spec.hard_cases else fine[here]
        texture = _roof_texture(*scene.roof_textures[i - 1], x[here], y[here], roof_fine)
        colour = scene.after_colours.get(i - 1, scene.roof_colours[i - 1]) if epoch == "after" else scene.roof_colours[i - 1]
        rgb[here] = colour * texture[:, None]

    vehicles = scene.vehicles[epoch]
    car_id = _burn(((vehicles[i][0], i + 1) for i in scene.visible("vehicles", epoch, area)), transform, shape)
    on_car = car_id > 0
    rgb[on_car] = CAR_PALETTE[[vehicles[i - 1][2] for i in car_id[on_car]]]
    rgb[in_shadow & ~on_roof] *= SHADOW_FACTOR  # roofs stand above the shadows cast near them

    tree_id, dome, _ = _tree_canopy(scene, epoch, area, x, y, transform, shape)
    leaf = tree_id > 0
    if dry:  # bare branches: a sparse, darker brown net over whatever lies below
        cover = np.clip(0.55 + 0.35 * _sample(tiles, "fine", x[leaf], y[leaf], 0.5), 0, 1)[:, None]
        rgb[leaf] = BARE_BRANCHES * (0.7 + 0.3 * dome[leaf])[:, None] * cover + rgb[leaf] * (1 - cover)
    else:
        rgb[leaf] = TREE * ((0.6 + 0.4 * dome[leaf]) * (1 + 0.25 * fine[leaf]))[:, None]

    rgb += _block_rng(spec.seed, transform, epoch).normal(0, spec.noise_sigma, rgb.shape).astype(np.float32)
    if epoch == "after":
        rgb = rgb * (spec.gain * np.asarray(spec.white_balance, np.float32)) + spec.offset
        if spec.vignetting:
            fx = (x / VIGNETTE_FRAME_M) % 1 - 0.5
            fy = (y / VIGNETTE_FRAME_M) % 1 - 0.5
            rgb *= (1 - spec.vignetting * 2 * (fx * fx + fy * fy))[..., None]
        if spec.gamma != 1.0:
            rgb = 255 * (np.clip(rgb, 0, 255) / 255) ** spec.gamma
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _render_dsm(scene: _Scene, tiles, transform: Affine, shape, epoch: str, spec: SceneSpec):
    area = _block_area(transform, shape)
    x, y = _pixel_centres(transform, shape)
    terrain = 12.0 + 1.5 * _sample(tiles, "low", x, y) + 0.002 * (x - SUQIAN_ORIGIN[0])
    height = _burn(((scene.roofs[i], float(scene.roof_heights[i])) for i in scene.visible("roofs", epoch, area)),
                   transform, shape, "float32")
    tree_id, dome, tree_h = _tree_canopy(scene, epoch, area, x, y, transform, shape)
    canopy = tree_h * (0.4 + 0.6 * dome)
    if epoch == "after" and spec.season_change:  # photogrammetry sees through bare crowns: lower, noisier
        canopy = canopy * np.clip(0.45 + 0.3 * _sample(tiles, "medium", x, y, 0.3), 0, 1)
    height = np.maximum(height, np.where(tree_id > 0, canopy, 0))
    vehicles = scene.vehicles[epoch]
    cars = _burn(((vehicles[i][0], vehicles[i][1]) for i in scene.visible("vehicles", epoch, area)),
                 transform, shape, "float32")
    height = np.maximum(height, cars)
    noise = _block_rng(spec.seed + 7, transform, epoch).normal(0, 0.05, shape)
    dsm = terrain + height + noise
    if epoch == "after":
        dsm += spec.dsm_bias_m + spec.dsm_tilt * (x - spec.origin[0])
    if spec.dsm_voids:
        holes = _sample(tiles, "medium", x / 4, y / 4, 0.17 if epoch == "after" else 0.71)
        dsm[holes > _normal_quantile(1 - spec.dsm_voids)] = -9999.0
    return dsm.astype(np.float32)[None]


def _normal_quantile(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))


def _write_raster(path: Path, size: int, georef: Affine, world_of_georef: Affine, render, *,
                  count: int, dtype: str, nodata, workers: int, jpeg_quality: int | None = None) -> None:
    """Render block by block: the content at pixel u is the scene at world_of_georef(georef(u))."""
    profile = dict(driver="GTiff", width=size, height=size, count=count, dtype=dtype, crs=f"EPSG:{CRS_EPSG}",
                   transform=georef, nodata=nodata, tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate", predictor=3 if dtype == "float32" else 2, BIGTIFF="IF_SAFER")
    if count == 3:
        profile["photometric"] = "RGB"
        if jpeg_quality:
            profile.update(compress="JPEG", photometric="YCBCR", jpeg_quality=jpeg_quality)
            profile.pop("predictor")
    windows = [Window(c, r, min(RENDER_BLOCK, size - c), min(RENDER_BLOCK, size - r))
               for r in range(0, size, RENDER_BLOCK) for c in range(0, size, RENDER_BLOCK)]

    def one(w: Window):
        tf = world_of_georef @ rasterio.windows.transform(w, georef)
        return w, render(tf, (int(w.height), int(w.width)))

    with rasterio.open(path, "w", **profile) as dst, ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(windows), workers * 2):  # bounded in-flight blocks keep memory flat
            for w, data in pool.map(one, windows[start:start + workers * 2]):
                dst.write(data, window=w)
        # internal overviews as an ingested analysis COG has them (rio-cogeo's levels: halve while over a block)
        dst.build_overviews([2**i for i in range(1, 32) if size / 2 ** (i - 1) > 512], Resampling.average)


def _reproject_in_place(path: Path, epsg: int, resolution: float) -> None:
    """Deliver a finished raster in another CRS, as another flight's software would."""
    tmp = path.with_suffix(".reprojected.tif")
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(src.crs, f"EPSG:{epsg}", src.width, src.height,
                                                               *src.bounds, resolution=resolution)
        profile = src.profile | dict(crs=f"EPSG:{epsg}", transform=transform, width=width, height=height)
        if src.count == 3:
            profile |= dict(count=4, photometric="RGB", compress="deflate", predictor=2)
            profile.pop("jpeg_quality", None)
        with rasterio.open(tmp, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.cubic,
                          src_nodata=src.nodata, dst_nodata=src.nodata)
            if src.count == 3:  # an alpha band marks where the reprojected raster has no data
                ones = np.full((src.height, src.width), 255, np.uint8)
                alpha = np.zeros((height, width), np.uint8)
                reproject(ones, alpha, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                          dst_crs=f"EPSG:{epsg}", resampling=Resampling.nearest, dst_nodata=0)
                dst.write(alpha, 4)
                dst.colorinterp = [rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.green,
                                   rasterio.enums.ColorInterp.blue, rasterio.enums.ColorInterp.alpha]
    tmp.replace(path)
