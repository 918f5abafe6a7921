"""SYNTHETIC drone orthophoto/DSM pairs with known ground truth, for tests and benchmarks only.

No real drone pair with ground truth exists offline, so this module paints a procedural aerial
scene (grass/soil ground, roads, roofs, trees, cast shadows) at 5 cm GSD in CGCS2000 / 3-degree
Gauss-Krüger CM 117E (EPSG:4548) near Suqian, and an "after" epoch with planted new structures,
distractors (new shrubs, cars), a known mis-registration and a brightness/contrast change.

Everything is rendered block by block from vector objects and periodic noise tiles, so a
20,000 x 20,000 px pair is written to disk without ever being held in memory.
"""

from __future__ import annotations

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
from rasterio.windows import Window
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box, mapping

CRS_EPSG = 4548  # CGCS2000 / 3-degree Gauss-Kruger CM 117E
SUQIAN_ORIGIN = (618300.0, 3759960.0)  # 118.28E 33.96N projected, rounded to whole metres
SUN_AZIMUTH_DEG = 135.0  # morning sun from the south-east: shadows fall to the north-west
SUN_ELEVATION_DEG = 55.0
SHADOW_FACTOR = 0.42
RENDER_BLOCK = 1024

GRASS, SOIL = np.array([88, 118, 62], np.float32), np.array([150, 128, 100], np.float32)
ROAD = np.array([96, 96, 100], np.float32)
ROOF_PALETTE = np.array(
    [[70, 120, 190], [225, 225, 220], [160, 160, 155], [170, 75, 60], [200, 205, 210]], np.float32
)  # blue colour-steel (彩钢瓦), white, concrete grey, red tile, light steel
TREE = np.array([45, 95, 40], np.float32)
CAR_PALETTE = np.array([[30, 30, 35], [230, 230, 230], [150, 30, 30], [120, 125, 130]], np.float32)


@dataclass(frozen=True)
class SyntheticPairSpec:
    """Parameters of one SYNTHETIC pair. Mis-registration is applied to the after epoch only."""

    size_px: int = 2048
    gsd_m: float = 0.05
    seed: int = 0
    new_structures: int | None = None  # default: about 4 per hectare, at least 6
    plant_changes: bool = True
    shift_px: tuple[float, float] = (3.37, -2.61)  # (x, y) in before pixels
    rotation_deg: float = 0.3
    scale: float = 1.0004
    gain: float = 1.12
    offset: float = -9.0
    noise_sigma: float = 2.0
    with_dsm: bool = True
    dsm_gsd_m: float = 0.2
    origin: tuple[float, float] = SUQIAN_ORIGIN  # top-left corner, EPSG:4548 metres


@dataclass
class SyntheticPair:
    before_rgb: Path
    after_rgb: Path
    before_dsm: Path | None
    after_dsm: Path | None
    truth: list[Polygon]  # new-structure footprints in EPSG:4548 metres
    truth_heights: list[float]
    true_correction: Affine  # world affine that maps the after georeference onto the truth
    truth_geojson: Path


@dataclass
class _Scene:
    roads: list[Polygon] = field(default_factory=list)
    roofs: list[Polygon] = field(default_factory=list)
    roof_heights: list[float] = field(default_factory=list)
    roof_colours: list[int] = field(default_factory=list)
    trees: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, r, h
    cars: list[Polygon] = field(default_factory=list)
    new_start: int = 0  # roofs[new_start:] exist in the after epoch only
    tree_new_start: int = 0
    car_new_start: int = 0

    def index(self) -> None:
        """Precompute shadows and spatial indexes so each block only burns what it overlaps."""
        self.discs = [Point(x, y).buffer(r) for x, y, r, _ in self.trees]
        self.shadows = ([_shadow(p, h) for p, h in zip(self.roofs, self.roof_heights)]
                        + [_shadow(d, t[3]) for d, t in zip(self.discs, self.trees)])
        self.trees_arr = np.array([(0, 0, 1, 0)] + self.trees, np.float64)  # row 0: dummy for "no tree"
        self._trees = {name: shapely.STRtree(geoms) for name, geoms in (
            ("roads", self.roads), ("roofs", self.roofs), ("discs", self.discs),
            ("shadows", self.shadows), ("cars", self.cars)) if geoms}

    def visible(self, kind: str, epoch: str, area: Polygon) -> np.ndarray:
        """Indices of objects of one kind that exist in the epoch and overlap the block."""
        if kind not in self._trees:
            return np.zeros(0, int)
        ids = np.sort(self._trees[kind].query(area))
        if epoch == "after" or kind == "roads":
            return ids
        n_roofs = len(self.roofs)
        if kind == "roofs":
            return ids[ids < self.new_start]
        if kind == "discs":
            return ids[ids < self.tree_new_start]
        if kind == "cars":
            return ids[ids < self.car_new_start]
        roof_shadow = ids < n_roofs  # shadows list: roofs first, then trees
        return ids[np.where(roof_shadow, ids < self.new_start, ids - n_roofs < self.tree_new_start)]


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


def write_synthetic_pair(out_dir: str | Path, spec: SyntheticPairSpec = SyntheticPairSpec(), *,
                         workers: int = 2) -> SyntheticPair:
    """Write a SYNTHETIC before/after pair (RGB and optional DSM GeoTIFFs) plus truth GeoJSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    extent = spec.size_px * spec.gsd_m
    x0, y1 = spec.origin
    bounds = (x0, y1 - extent, x0 + extent, y1)
    scene = _layout_scene(rng, bounds, spec)
    tiles = _noise_tiles(spec.seed)
    misregistration = _misregistration(spec, bounds)

    rgb_transform = Affine(spec.gsd_m, 0, x0, 0, -spec.gsd_m, y1)
    paths = {}
    for epoch, world_of_georef in (("before", Affine.identity()), ("after", misregistration)):
        paths[f"{epoch}_rgb"] = out / f"synthetic_{epoch}_rgb.tif"
        _write_raster(paths[f"{epoch}_rgb"], spec.size_px, rgb_transform, world_of_georef,
                      lambda tf, shape, e=epoch: _render_rgb(scene, tiles, tf, shape, e, spec),
                      count=3, dtype="uint8", nodata=None, workers=workers)
        paths[f"{epoch}_dsm"] = None
        if spec.with_dsm:
            dsm_px = int(round(extent / spec.dsm_gsd_m))
            dsm_transform = Affine(spec.dsm_gsd_m, 0, x0, 0, -spec.dsm_gsd_m, y1)
            paths[f"{epoch}_dsm"] = out / f"synthetic_{epoch}_dsm.tif"
            _write_raster(paths[f"{epoch}_dsm"], dsm_px, dsm_transform, world_of_georef,
                          lambda tf, shape, e=epoch: _render_dsm(scene, tiles, tf, shape, e, spec),
                          count=1, dtype="float32", nodata=-9999.0, workers=workers)

    truth = scene.roofs[scene.new_start:]
    heights = scene.roof_heights[scene.new_start:]
    truth_path = out / "synthetic_truth.geojson"
    truth_path.write_text(json.dumps({
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{CRS_EPSG}"}},
        "features": [{"type": "Feature", "geometry": mapping(p), "properties": {"height_m": h}}
                     for p, h in zip(truth, heights)],
    }))
    return SyntheticPair(paths["before_rgb"], paths["after_rgb"], paths["before_dsm"],
                         paths["after_dsm"], truth, heights, misregistration, truth_path)


def _misregistration(spec: SyntheticPairSpec, bounds) -> Affine:
    """World affine S: after pixel u truly shows world point S(T_after(u)); rotation/scale about the centre."""
    cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    shift = Affine.translation(spec.shift_px[0] * spec.gsd_m, -spec.shift_px[1] * spec.gsd_m)
    about_centre = (Affine.translation(cx, cy) @ Affine.rotation(spec.rotation_deg)
                    @ Affine.scale(spec.scale) @ Affine.translation(-cx, -cy))
    return shift @ about_centre


def _layout_scene(rng: np.random.Generator, bounds, spec: SyntheticPairSpec) -> _Scene:
    xmin, ymin, xmax, ymax = bounds
    extent = xmax - xmin
    area_ha = extent * extent / 1e4
    angle = rng.uniform(-25, 25)
    centre = ((xmin + xmax) / 2, (ymin + ymax) / 2)
    scene = _Scene()

    spacing = rng.uniform(70, 110)
    for offset in np.arange(-extent, extent, spacing) + rng.uniform(0, spacing):
        for along_x in (True, False):
            a, b = (-extent, offset), (extent, offset)
            line = LineString([a, b] if along_x else [(offset, -extent), (offset, extent)])
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

    def rect(w_range, l_range):
        def make(cx, cy):
            w, l = rng.uniform(*w_range), rng.uniform(*l_range)
            return affinity.rotate(box(cx - w / 2, cy - l / 2, cx + w / 2, cy + l / 2),
                                   angle + rng.normal(0, 3), origin=(cx, cy))
        return make

    existing = place(max(2, int(area_ha * 5)), rect((8, 22), (8, 26)), 3.0)
    # New footprints are reserved before trees whether planted or not, so the unchanged pair of a
    # seed is the same scene as its changed pair.
    new = place(spec.new_structures or max(6, int(round(area_ha * 4))), rect((4, 14), (4, 20)), 4.0)
    new_heights = list(rng.uniform(2.5, 10, len(new)))
    trees = place(max(4, int(area_ha * 12)), lambda cx, cy: Point(cx, cy).buffer(rng.uniform(1.5, 4.5)), 1.0)
    shrubs = place(max(2, int(area_ha * 3)), lambda cx, cy: Point(cx, cy).buffer(rng.uniform(1.0, 2.5)), 1.0)
    cars = _cars_on_roads(rng, scene.roads, bounds, angle, max(2, int(area_ha * 4)))

    scene.roofs += existing
    scene.roof_heights += list(rng.uniform(3, 15, len(existing)))
    scene.trees += [_tree(t, h) for t, h in zip(trees, rng.uniform(4, 12, len(trees)))]
    scene.new_start, scene.tree_new_start, scene.car_new_start = len(scene.roofs), len(scene.trees), 0
    if spec.plant_changes:
        scene.roofs += new
        scene.roof_heights += new_heights
        scene.trees += [_tree(s, h) for s, h in zip(shrubs, rng.uniform(1.5, 4, len(shrubs)))]
        scene.cars += cars
    scene.roof_colours = list(rng.integers(0, len(ROOF_PALETTE), len(existing) + len(new))[:len(scene.roofs)])
    scene.index()
    return scene


def _tree(disc: Polygon, height: float) -> tuple[float, float, float, float]:
    return disc.centroid.x, disc.centroid.y, math.sqrt(disc.area / math.pi), float(height)


def _cars_on_roads(rng, roads, bounds, angle, n) -> list[Polygon]:
    road_union = shapely.intersection(shapely.union_all(roads), box(*bounds).buffer(-5))
    cars = []
    for _ in range(n * 50):
        if len(cars) == n:
            break
        cx, cy = rng.uniform(bounds[0], bounds[2]), rng.uniform(bounds[1], bounds[3])
        car = affinity.rotate(box(cx - 0.9, cy - 2.25, cx + 0.9, cy + 2.25), angle + 90 * rng.integers(0, 2),
                              origin=(cx, cy))
        if road_union.contains(car):
            cars.append(car)
    return cars


def _shadow(footprint: Polygon, height: float) -> Polygon:
    length = height / math.tan(math.radians(SUN_ELEVATION_DEG))
    away = math.radians(SUN_AZIMUTH_DEG + 180)
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


def _sample(tiles, name, x, y):
    scale = TEXEL_M[name]
    return ndimage.map_coordinates(tiles[name], [y / scale, x / scale], order=1, mode="grid-wrap")


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


def _block_rng(seed: int, transform: Affine) -> np.random.Generator:
    return np.random.default_rng([seed, int(abs(transform.c) * 100) % 2**31, int(abs(transform.f) * 100) % 2**31])


def _render_rgb(scene: _Scene, tiles, transform: Affine, shape, epoch: str, spec: SyntheticPairSpec):
    area = _block_area(transform, shape)
    x, y = _pixel_centres(transform, shape)
    fine, medium, low = (_sample(tiles, n, x, y) for n in ("fine", "medium", "low"))
    soil = np.clip(low * 1.5 + 0.5, 0, 1)[..., None]
    rgb = (GRASS * (1 - soil) + SOIL * soil) * (1 + 0.12 * medium + 0.10 * fine)[..., None]

    road = _burn(((scene.roads[i], 1) for i in scene.visible("roads", epoch, area)), transform, shape) > 0
    rgb[road] = ROAD * (1 + 0.06 * fine[road] + 0.03 * medium[road])[:, None]
    in_shadow = _burn(((scene.shadows[i], 1) for i in scene.visible("shadows", epoch, area)), transform, shape) > 0
    rgb[in_shadow] *= SHADOW_FACTOR

    roof_id = _burn(((scene.roofs[i], i + 1) for i in scene.visible("roofs", epoch, area)), transform, shape)
    on_roof = roof_id > 0
    colour = np.array(scene.roof_colours, int)[roof_id[on_roof] - 1]
    ridges = 1 + 0.05 * np.sin(x[on_roof] * 9.0 + y[on_roof] * 4.0)  # corrugation of steel sheets
    rgb[on_roof] = ROOF_PALETTE[colour] * (ridges * (1 + 0.04 * fine[on_roof]))[:, None]

    tree_id, dome, _ = _tree_canopy(scene, epoch, area, x, y, transform, shape)
    leaf = tree_id > 0
    rgb[leaf] = TREE * ((0.6 + 0.4 * dome[leaf]) * (1 + 0.25 * fine[leaf]))[:, None]

    car_id = _burn(((scene.cars[i], i + 1) for i in scene.visible("cars", epoch, area)), transform, shape)
    on_car = car_id > 0
    rgb[on_car] = CAR_PALETTE[(car_id[on_car] - 1) % len(CAR_PALETTE)]

    rgb += _block_rng(spec.seed, transform).normal(0, spec.noise_sigma, rgb.shape).astype(np.float32)
    if epoch == "after":
        rgb = rgb * spec.gain + spec.offset
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _render_dsm(scene: _Scene, tiles, transform: Affine, shape, epoch: str, spec: SyntheticPairSpec):
    area = _block_area(transform, shape)
    x, y = _pixel_centres(transform, shape)
    terrain = 12.0 + 1.5 * _sample(tiles, "low", x, y) + 0.002 * (x - SUQIAN_ORIGIN[0])
    height = _burn(((scene.roofs[i], float(scene.roof_heights[i])) for i in scene.visible("roofs", epoch, area)),
                   transform, shape, "float32")
    tree_id, dome, tree_h = _tree_canopy(scene, epoch, area, x, y, transform, shape)
    height = np.maximum(height, np.where(tree_id > 0, tree_h * (0.4 + 0.6 * dome), 0))
    cars = _burn(((scene.cars[i], 1.5) for i in scene.visible("cars", epoch, area)), transform, shape, "float32")
    height = np.maximum(height, cars)
    noise = _block_rng(spec.seed + 7, transform).normal(0, 0.05, shape)
    return (terrain + height + noise).astype(np.float32)[None]


def _write_raster(path: Path, size: int, georef: Affine, world_of_georef: Affine, render, *,
                  count: int, dtype: str, nodata, workers: int) -> None:
    """Render block by block: the content at pixel u is the scene at world_of_georef(georef(u))."""
    profile = dict(driver="GTiff", width=size, height=size, count=count, dtype=dtype, crs=f"EPSG:{CRS_EPSG}",
                   transform=georef, nodata=nodata, tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate", predictor=3 if dtype == "float32" else 2, BIGTIFF="IF_SAFER")
    if count == 3:
        profile["photometric"] = "RGB"
    windows = [Window(c, r, min(RENDER_BLOCK, size - c), min(RENDER_BLOCK, size - r))
               for r in range(0, size, RENDER_BLOCK) for c in range(0, size, RENDER_BLOCK)]

    def one(w: Window):
        tf = world_of_georef @ rasterio.windows.transform(w, georef)
        return w, render(tf, (int(w.height), int(w.width)))

    with rasterio.open(path, "w", **profile) as dst, ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(windows), workers * 2):  # bounded in-flight blocks keep memory flat
            for w, data in pool.map(one, windows[start:start + workers * 2]):
                dst.write(data, window=w)
