"""The demo city's plan: a synthetic Suqian laid out in metres, then carried to CGCS2000.

Each town is drawn in its own transverse Mercator frame (metres, origin at the town centre), so
the lattice of roads, streets, communities and 100 m unit grids stays rectilinear; everything is
transformed to EPSG:4490 at the end. The main city (宿城区 west of the Grand Canal, 宿豫区 east
of it) and the three county seats carry the five real GB/T 2260 codes of 宿迁市.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
import shapely.ops
from pyproj import CRS, Transformer
from shapely.geometry import LineString, MultiPolygon, Polygon, box

MUNICIPALITY = ("321300", "宿迁市")
DISTRICTS = {
    "321302": ("宿城区", "市辖区"),
    "321311": ("宿豫区", "市辖区"),
    "321322": ("沭阳县", "县"),
    "321323": ("泗阳县", "县"),
    "321324": ("泗洪县", "县"),
}
# Rough outline of the municipality and one seed per county for the county-wide polygons.
MUNICIPAL_OUTLINE = [
    (117.95, 33.75), (118.10, 34.15), (118.45, 34.45), (118.95, 34.45), (119.20, 34.20),
    (119.05, 33.70), (118.75, 33.30), (118.35, 33.10), (118.00, 33.25), (117.90, 33.55),
]
COUNTY_SEEDS = {
    "321302": (118.15, 33.88), "321311": (118.45, 34.10), "321322": (118.85, 34.18),
    "321323": (118.72, 33.72), "321324": (118.30, 33.38),
}
STREET_NAMES = {
    "321302": ["项里", "河滨", "幸福", "古城", "双庄", "黄河", "王官集", "埠子", "龙河", "洋北"],
    "321311": ["顺河", "下相", "豫新", "井头", "仰化", "大兴", "丁嘴", "来龙", "关庙", "新庄"],
    "321322": ["沭城", "梦溪", "章集", "十字", "七雄", "南关"],
    "321323": ["众兴", "来安", "爱园", "城厢", "王集", "李口"],
    "321324": ["青阳", "大楼", "洪翔", "双沟", "石集", "城头"],
}
COMMUNITY_WORDS = [
    "运河", "幸福", "和平", "东风", "新华", "人民", "文化", "建设", "花园", "阳光", "锦绣", "桃园",
    "春晖", "振兴", "富康", "民主", "光明", "永安", "朝阳", "金鸡湖", "湖滨", "柳岸", "翠园", "泰山",
]
ROAD_WORDS = [
    "发展", "人民", "洪泽湖", "西湖", "宿支", "黄河", "太湖", "珠江", "青海湖", "世纪", "通湖", "迎宾",
    "威海", "上海", "北京", "南京", "苏州", "无锡", "常州", "扬州", "徐州", "淮海", "楚街", "项王",
    "马陵", "古黄河", "隆锦", "富康", "双河", "洋河", "三台山", "嶂山", "新扬", "金鸡", "骆马湖", "运河",
]

GRID_SIZE_M = 100.0
COMMUNITY_SIZE_M = 1000.0
ROAD_SPACING_M = 250.0
ROAD_WIDTH_M = {"arterial": 40.0, "secondary": 24.0, "local": 14.0}


@dataclass(frozen=True)
class Town:
    name: str
    lon: float
    lat: float
    width_m: float
    height_m: float
    districts: tuple[str, ...]
    street_block_m: float
    has_canal: bool = False


TOWNS = (
    Town("宿迁市区", 118.28, 33.96, 12_000, 10_000, ("321302", "321311"), 3_000, has_canal=True),
    Town("沭阳县城", 118.77, 34.13, 4_000, 4_000, ("321322",), 2_000),
    Town("泗阳县城", 118.70, 33.72, 4_000, 4_000, ("321323",), 2_000),
    Town("泗洪县城", 118.22, 33.46, 4_000, 4_000, ("321324",), 2_000),
)


@dataclass
class TownPlan:
    """One town in its local metric frame."""

    town: Town
    to_cgcs2000: Transformer
    extent: Polygon
    water: list[tuple[str, Polygon]] = field(default_factory=list)
    district_parts: dict[str, Polygon] = field(default_factory=dict)
    streets: list[dict] = field(default_factory=list)
    communities: list[dict] = field(default_factory=list)
    grids: list[dict] = field(default_factory=list)
    roads: list[dict] = field(default_factory=list)
    road_x: np.ndarray = field(default_factory=lambda: np.empty(0))
    road_y: np.ndarray = field(default_factory=lambda: np.empty(0))
    road_class_x: list[str] = field(default_factory=list)
    road_class_y: list[str] = field(default_factory=list)
    buildings: list[Polygon] = field(default_factory=list)

    @property
    def land(self):
        water = shapely.union_all([w for _, w in self.water]) if self.water else Polygon()
        return self.extent.difference(water)

    def to_4490(self, geoms):
        """Local metres -> CGCS2000 lon/lat, vectorised over an array of geometries."""
        def project(xy: np.ndarray) -> np.ndarray:
            lon, lat = self.to_cgcs2000.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([lon, lat])

        return shapely.transform(np.asarray(geoms, dtype=object), project)


def _local_frame(town: Town) -> Transformer:
    local = CRS.from_proj4(f"+proj=tmerc +lat_0={town.lat} +lon_0={town.lon} +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m")
    return Transformer.from_crs(local, CRS.from_epsg(4490), always_xy=True)


def _canal_line(town: Town) -> LineString:
    """The Grand Canal's centre line: a gentle NW->SE curve running past the town's edges."""
    y = np.linspace(town.height_m * 0.9, -town.height_m * 0.9, 200)
    x = -0.3 * y + 600.0 * np.sin(y / 1800.0)
    return LineString(np.column_stack([x, y]))


def _canal(town: Town) -> Polygon:
    """The Grand Canal, 80 m wide."""
    return _canal_line(town).buffer(40.0, cap_style="flat")


def _split_by_canal(extent: Polygon, centre_line: LineString) -> tuple[Polygon, Polygon]:
    """West and east of the canal's centre line: each district takes its half of the water, so
    every point of the town lies in exactly one district (streets keep to the land)."""
    pieces = sorted(shapely.get_parts(shapely.ops.split(extent, centre_line)), key=lambda p: p.centroid.x)
    west = shapely.union_all([p for p in pieces if p.centroid.x < 0]) if len(pieces) > 2 else pieces[0]
    east = shapely.union_all([p for p in pieces if p.centroid.x >= 0]) if len(pieces) > 2 else pieces[-1]
    return west, east


def _cells(bounds: tuple[float, float, float, float], size: float) -> list[tuple[int, int, Polygon]]:
    """Square cells over bounds, as (row north->south, column west->east, cell)."""
    minx, miny, maxx, maxy = bounds
    cols = int(np.ceil((maxx - minx) / size))
    rows = int(np.ceil((maxy - miny) / size))
    return [
        (r, c, box(minx + c * size, maxy - (r + 1) * size, minx + (c + 1) * size, maxy - r * size))
        for r in range(rows)
        for c in range(cols)
    ]


def _as_multipolygon(geom) -> MultiPolygon | None:
    polygons = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    return MultiPolygon(polygons) if polygons else None


def _plan_admin(plan: TownPlan, street_counter: dict[str, int], rng: np.random.Generator) -> None:
    town = plan.town
    land = plan.land
    for code in town.districts:
        plan.district_parts[code] = plan.district_parts.get(code, land)
    for row, col, cell in _cells(plan.extent.bounds, town.street_block_m):
        for district_code, part in plan.district_parts.items():
            street_area = _as_multipolygon(cell.intersection(part).intersection(land))
            if street_area is None or street_area.area < 0.05 * town.street_block_m**2:
                continue
            street_counter[district_code] += 1
            seq = street_counter[district_code]
            names = STREET_NAMES[district_code]
            name = names[(seq - 1) % len(names)] + ("街道" if seq <= len(names) else f"{seq}街道")
            street = {"code": f"{district_code}{seq:03d}", "name": name, "geom": street_area}
            plan.streets.append(street)
            _plan_communities(plan, street, rng)


def _plan_communities(plan: TownPlan, street: dict, rng: np.random.Generator) -> None:
    seq = 0
    for _row, _col, cell in _cells(street["geom"].bounds, COMMUNITY_SIZE_M):
        area = _as_multipolygon(cell.intersection(street["geom"]))
        if area is None or area.area < 0.1 * COMMUNITY_SIZE_M**2:
            continue
        seq += 1
        word = COMMUNITY_WORDS[int(rng.integers(len(COMMUNITY_WORDS)))]
        community = {"code": f"{street['code']}{seq:03d}", "name": f"{word}社区", "geom": area}
        plan.communities.append(community)
        _plan_grids(plan, community)


def _plan_grids(plan: TownPlan, community: dict) -> None:
    """~10,000 m² grids, numbered west->east within rows taken north->south (GB/T 30428.1)."""
    cells = _cells(community["geom"].bounds, GRID_SIZE_M)
    pieces = shapely.intersection(np.array([c for _, _, c in cells], dtype=object), community["geom"])
    seq = 0
    for (_row, _col, _cell), piece in zip(cells, pieces):
        area = _as_multipolygon(piece)
        if area is None or area.area < 0.1 * GRID_SIZE_M**2:
            continue
        seq += 1
        plan.grids.append({"bgcode": f"{community['code']}{seq:03d}", "geom": area})


def _plan_roads(plan: TownPlan, rng: np.random.Generator) -> None:
    minx, miny, maxx, maxy = plan.extent.bounds
    xs = np.arange(minx + ROAD_SPACING_M / 2, maxx, ROAD_SPACING_M) + rng.uniform(-30, 30, size=int((maxx - minx) // ROAD_SPACING_M))
    ys = np.arange(miny + ROAD_SPACING_M / 2, maxy, ROAD_SPACING_M) + rng.uniform(-30, 30, size=int((maxy - miny) // ROAD_SPACING_M))
    plan.road_x, plan.road_y = xs, ys

    def road_class(i: int) -> str:
        return "arterial" if i % 4 == 0 else "secondary" if i % 2 == 0 else "local"

    plan.road_class_x = [road_class(i) for i in range(len(xs))]
    plan.road_class_y = [road_class(i) for i in range(len(ys))]
    for i, x in enumerate(xs):
        word = ROAD_WORDS[(i * 7) % len(ROAD_WORDS)]
        plan.roads.append({"name": f"{word}路", "road_class": plan.road_class_x[i], "geom": LineString([(x, maxy), (x, miny)])})
    for j, y in enumerate(ys):
        word = ROAD_WORDS[(j * 5 + 3) % len(ROAD_WORDS)]
        suffix = "大道" if plan.road_class_y[j] == "arterial" else "街"
        plan.roads.append({"name": f"{word}{suffix}", "road_class": plan.road_class_y[j], "geom": LineString([(minx, y), (maxx, y)])})


def _plan_buildings(plan: TownPlan, rng: np.random.Generator) -> None:
    """Footprints on ~50 m plots inside each block; about one block in ten is a park."""
    xs, ys = plan.road_x, plan.road_y
    footprints = []
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            if rng.random() < 0.1:
                continue
            inset_x = ROAD_WIDTH_M[plan.road_class_x[i]] / 2 + 8
            inset_x2 = ROAD_WIDTH_M[plan.road_class_x[i + 1]] / 2 + 8
            inset_y = ROAD_WIDTH_M[plan.road_class_y[j]] / 2 + 8
            inset_y2 = ROAD_WIDTH_M[plan.road_class_y[j + 1]] / 2 + 8
            x0, x1 = xs[i] + inset_x, xs[i + 1] - inset_x2
            y0, y1 = ys[j] + inset_y, ys[j + 1] - inset_y2
            nx, ny = max(1, int((x1 - x0) // 50)), max(1, int((y1 - y0) // 50))
            px, py = (x1 - x0) / nx, (y1 - y0) / ny
            for a in range(nx):
                for b in range(ny):
                    w = px * rng.uniform(0.45, 0.8)
                    h = py * rng.uniform(0.35, 0.7)
                    cx = x0 + (a + 0.5) * px + rng.uniform(-0.1, 0.1) * (px - w)
                    cy = y0 + (b + 0.5) * py + rng.uniform(-0.1, 0.1) * (py - h)
                    footprints.append(box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    footprints_arr = np.array(footprints, dtype=object)
    land = plan.land
    shapely.prepare(land)
    inside = shapely.contains(land, footprints_arr) if len(footprints) else np.zeros(0, bool)
    plan.buildings = list(footprints_arr[inside])


def plan_city(seed: int = 3213) -> list[TownPlan]:
    """Every town of the demo city, deterministically for one seed."""
    rng = np.random.default_rng(seed)
    street_counter = {code: 0 for code in DISTRICTS}
    plans = []
    for town in TOWNS:
        extent = box(-town.width_m / 2, -town.height_m / 2, town.width_m / 2, town.height_m / 2)
        plan = TownPlan(town=town, to_cgcs2000=_local_frame(town), extent=extent)
        if town.has_canal:
            canal = _canal(town)
            plan.water.append(("京杭大运河", canal))
            west, east = _split_by_canal(extent, _canal_line(town))
            plan.district_parts = {town.districts[0]: west, town.districts[1]: east}
        _plan_admin(plan, street_counter, rng)
        _plan_roads(plan, rng)
        _plan_buildings(plan, rng)
        plans.append(plan)
    return plans


def county_polygons(plans: list[TownPlan]) -> dict[str, MultiPolygon]:
    """County-wide polygons in EPSG:4490: Voronoi cells of the seeds inside the municipal outline,
    with every town's parts given to their own districts so streets always lie inside them."""
    outline = Polygon(MUNICIPAL_OUTLINE)
    codes = list(COUNTY_SEEDS)
    seeds = shapely.multipoints([COUNTY_SEEDS[c] for c in codes])
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=outline))
    by_code = {}
    for code in codes:
        seed = shapely.Point(COUNTY_SEEDS[code])
        by_code[code] = next(cell for cell in cells if cell.contains(seed)).intersection(outline)
    # The towns' district parts as projected (not the towns' boxes: a projected edge with an extra
    # vertex bends away from the box's chord), so the counties tile the outline without slivers.
    parts_of = {code: [plan.to_4490([part])[0] for plan in plans for c, part in plan.district_parts.items() if c == code]
                for code in codes}
    all_parts = shapely.union_all([part for parts in parts_of.values() for part in parts])
    result = {}
    for code, cell in by_code.items():
        area = shapely.union_all([cell.difference(all_parts), *parts_of[code]])
        result[code] = _as_multipolygon(shapely.make_valid(area))
    return result
