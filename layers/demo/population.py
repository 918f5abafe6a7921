"""What the demo city holds: components, stall sites, illegal buildings, a year of alarms and cases.

Counts follow what Suqian reports (6,371 smart manhole covers, 950 stall sites of which 818 are
occupied, 889 video cameras, ~98 % of filed cases closed); `scale` multiplies them. Positions are
sampled beside the lattice roads of each town plan, in local metres, then carried to EPSG:4490.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import box

from gis.errors import InvalidInput
from gis.standards import COMPONENT_CLASSES, EVENT_CLASSES
from layers.demo.plan import ROAD_WIDTH_M, TownPlan

MANHOLE_COVERS = 6_371
VIDEO_CAMERAS = 889
STALL_SITES = 950
OCCUPIED_STALL_SITES = 818
STREETLIGHT_SPACING_M = 35.0
FURNITURE = 15_000
HYDRANTS = 1_200
ILLEGAL_BUILDINGS = 60
ALARMS_PER_DAY = 15
CASES_PER_DAY = 100
CASE_CLOSURE_RATE = 0.984

MANHOLE_CLASS_WEIGHTS = {
    "0101": 0.16, "0102": 0.22, "0103": 0.24, "0105": 0.08, "0106": 0.04, "0107": 0.1,
    "0108": 0.02, "0109": 0.03, "0110": 0.02, "0111": 0.06, "0112": 0.01, "0114": 0.02,
}
FURNITURE_CLASS_WEIGHTS = {
    "0305": 0.40, "0690": 0.25, "0203": 0.08, "0501": 0.08, "0126": 0.05, "0121": 0.04,
    "0123": 0.04, "0301": 0.03, "0138": 0.03,
}
CLASS_NAMES = {code: name for code, name, _en, _geom in COMPONENT_CLASSES}
DEPARTMENTS = {
    "01": ("宿迁市城市管理局", "宿迁市水务集团", "宿迁市市政设施养护中心"),
    "02": ("宿迁市交通运输局", "宿迁市公安局交通警察支队", "宿迁市交通设施养护处"),
    "03": ("宿迁市城市管理局", "区环境卫生管理处", "宿迁市环卫服务公司"),
    "04": ("宿迁市住房和城乡建设局", "宿迁市园林绿化管理处", "宿迁市园林养护公司"),
    "05": ("宿迁市自然资源和规划局", "区住房和城乡建设局", "区物业管理中心"),
    "06": ("宿迁市城市管理局", "区城市管理局", "区市政养护公司"),
}
OBJSTATE_WEIGHTS = {"完好": 0.93, "破损": 0.05, "丢失": 0.005, "占用": 0.015}
ALARM_TYPE_WEIGHTS = {"displacement": 0.35, "opened": 0.25, "overflow": 0.25, "methane": 0.15}
CASE_SOURCE_WEIGHTS = {"supervisor": 0.6, "video": 0.15, "public": 0.15, "superior": 0.05, "sensor": 0.05}


@dataclass
class Components:
    objcode: list[str] = field(default_factory=list)
    objname: list[str] = field(default_factory=list)
    bgcode: list[str] = field(default_factory=list)
    objstate: list[str] = field(default_factory=list)
    ordate: list = field(default_factory=list)
    geom: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.objcode)


@dataclass
class Population:
    components: Components
    manhole_sensors: list[tuple]
    streetlights: list[tuple]
    stall_sites: list[tuple]
    illegal_buildings: list[tuple]
    alarms: list[tuple]
    cases: Cases


def _choice(rng: np.random.Generator, weights: dict[str, float], n: int) -> np.ndarray:
    keys = list(weights)
    p = np.array([weights[k] for k in keys])
    return np.array(keys)[rng.choice(len(keys), size=n, p=p / p.sum())]


class RoadsideSampler:
    """Random positions beside a town's lattice roads, and the unit grid each falls in."""

    def __init__(self, plan: TownPlan):
        self.plan = plan
        minx, miny, maxx, maxy = plan.extent.bounds
        self.bounds = (minx, miny, maxx, maxy)
        self.width_x = np.array([ROAD_WIDTH_M[c] for c in plan.road_class_x])
        self.width_y = np.array([ROAD_WIDTH_M[c] for c in plan.road_class_y])
        self.length = len(plan.road_x) * (maxy - miny) + len(plan.road_y) * (maxx - minx)
        self.grid_geoms = np.array([g["geom"] for g in plan.grids], dtype=object)
        self.grid_codes = np.array([g["bgcode"] for g in plan.grids])
        self.tree = shapely.STRtree(self.grid_geoms)

    def along(self, rng: np.random.Generator, n: int, kerb_offset: tuple[float, float]) -> np.ndarray:
        """n points at a distance from the road edge drawn from kerb_offset (metres; negative = on the carriageway)."""
        minx, miny, maxx, maxy = self.bounds
        nx, ny = len(self.plan.road_x), len(self.plan.road_y)
        vertical_share = nx * (maxy - miny) / self.length
        vertical = rng.random(n) < vertical_share
        side = rng.choice([-1.0, 1.0], size=n)
        kerb = rng.uniform(*kerb_offset, size=n)
        xs = np.empty(n)
        ys = np.empty(n)
        iv = rng.integers(nx, size=n)
        ih = rng.integers(ny, size=n)
        xs[vertical] = self.plan.road_x[iv[vertical]] + side[vertical] * (self.width_x[iv[vertical]] / 2 + kerb[vertical])
        ys[vertical] = rng.uniform(miny, maxy, size=vertical.sum())
        horizontal = ~vertical
        ys[horizontal] = self.plan.road_y[ih[horizontal]] + side[horizontal] * (self.width_y[ih[horizontal]] / 2 + kerb[horizontal])
        xs[horizontal] = rng.uniform(minx, maxx, size=horizontal.sum())
        return np.column_stack([xs, ys])

    def at_intersections(self, rng: np.random.Generator, n: int, jitter_m: float) -> np.ndarray:
        i = rng.integers(len(self.plan.road_x), size=n)
        j = rng.integers(len(self.plan.road_y), size=n)
        return np.column_stack([
            self.plan.road_x[i] + rng.uniform(-jitter_m, jitter_m, n),
            self.plan.road_y[j] + rng.uniform(-jitter_m, jitter_m, n),
        ])

    def spaced(self, spacing_m: float, kerb_m: float) -> np.ndarray:
        """Both sides of every road, every spacing_m (streetlights)."""
        minx, miny, maxx, maxy = self.bounds
        points = []
        along_y = np.arange(miny + spacing_m / 2, maxy, spacing_m)
        for x, w in zip(self.plan.road_x, self.width_x):
            for side in (-1.0, 1.0):
                points.append(np.column_stack([np.full_like(along_y, x + side * (w / 2 + kerb_m)), along_y]))
        along_x = np.arange(minx + spacing_m / 2, maxx, spacing_m)
        for y, w in zip(self.plan.road_y, self.width_y):
            for side in (-1.0, 1.0):
                points.append(np.column_stack([along_x, np.full_like(along_x, y + side * (w / 2 + kerb_m))]))
        return np.concatenate(points)

    def locate(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(points, bgcodes) for the points that fall inside a unit grid; the others are dropped."""
        points = shapely.points(xy)
        point_idx, grid_idx = self.tree.query(points, predicate="intersects")
        first = np.unique(point_idx, return_index=True)[1]
        return points[point_idx[first]], self.grid_codes[grid_idx[first]]


class CodeAllocator:
    """Serial numbers per (county, class), so every objcode is unique and standard."""

    def __init__(self):
        self.next_serial: dict[str, int] = {}

    def allocate(self, bgcodes: np.ndarray, class_codes: np.ndarray) -> list[str]:
        prefixes = pd.Series([bgcode[:6] for bgcode in bgcodes]) + pd.Series(class_codes, dtype=str).to_numpy()
        serials = prefixes.groupby(prefixes).cumcount().to_numpy() + 1
        serials += prefixes.map(lambda p: self.next_serial.get(p, 0)).to_numpy()
        for prefix, highest in pd.Series(serials).groupby(prefixes).max().items():
            if highest > 999_999:
                raise InvalidInput(f"more than 999,999 components of class {prefix[6:]} in county {prefix[:6]}: lower --scale")
            self.next_serial[prefix] = int(highest)
        return [f"{prefix}{serial:06d}" for prefix, serial in zip(prefixes, serials)]


def _share(plans: list[TownPlan], samplers: list[RoadsideSampler], total: int) -> list[int]:
    """Split a count across towns by road length, exactly summing to total."""
    lengths = np.array([s.length for s in samplers])
    raw = total * lengths / lengths.sum()
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: total - counts.sum()]] += 1
    return counts.tolist()


def _add_components(components: Components, allocator: CodeAllocator, rng, plan: TownPlan,
                    points, bgcodes, class_codes) -> list[str]:
    objcodes = allocator.allocate(bgcodes, class_codes)
    components.objcode += objcodes
    components.objname += [CLASS_NAMES[c] for c in class_codes]
    components.bgcode += list(bgcodes)
    components.objstate += list(_choice(rng, OBJSTATE_WEIGHTS, len(objcodes)))
    days = rng.integers(0, 3650, size=len(objcodes))
    components.ordate += (np.datetime64("2015-01-01") + days).astype(str).tolist()
    components.geom += list(plan.to_4490(points))
    return objcodes


def _sample_located(sampler: RoadsideSampler, rng, n: int, draw) -> tuple[np.ndarray, np.ndarray]:
    """Draw until n points fall on land inside a grid (water and town edges are rejected)."""
    points, codes = [], []
    have = 0
    while have < n:
        p, c = sampler.locate(draw(rng, int((n - have) * 1.2) + 10))
        points.append(p)
        codes.append(c)
        have += len(p)
    return np.concatenate(points)[:n], np.concatenate(codes)[:n]


def populate(plans: list[TownPlan], *, scale: int, now: datetime, seed: int = 30428) -> Population:
    rng = np.random.default_rng(seed)
    samplers = [RoadsideSampler(plan) for plan in plans]
    components = Components()
    allocator = CodeAllocator()
    manhole_sensors: list[tuple] = []
    streetlights: list[tuple] = []
    stall_sites: list[tuple] = []
    illegal: list[tuple] = []
    manhole_codes: list[str] = []

    for plan, sampler, n_manholes, n_cameras, n_furniture, n_hydrants in zip(
        plans, samplers,
        _share(plans, samplers, MANHOLE_COVERS * scale),
        _share(plans, samplers, VIDEO_CAMERAS * scale),
        _share(plans, samplers, FURNITURE * scale),
        _share(plans, samplers, HYDRANTS * scale),
    ):
        points, bgcodes = _sample_located(sampler, rng, n_manholes, lambda r, k: sampler.along(r, k, (-8.0, -1.0)))
        codes = _add_components(components, allocator, rng, plan, points, bgcodes, _choice(rng, MANHOLE_CLASS_WEIGHTS, n_manholes))
        manhole_codes += codes
        battery = rng.integers(20, 101, size=len(codes))
        for code, pct in zip(codes, battery):
            manhole_sensors.append((code, f"NB-{code}", "offline" if rng.random() < 0.01 else "normal", int(pct)))

        points, bgcodes = _sample_located(sampler, rng, n_cameras, lambda r, k: sampler.at_intersections(r, k, 15.0))
        _add_components(components, allocator, rng, plan, points, bgcodes, np.full(n_cameras, "0136"))

        points, bgcodes = _sample_located(sampler, rng, n_furniture, lambda r, k: sampler.along(r, k, (1.0, 5.0)))
        _add_components(components, allocator, rng, plan, points, bgcodes, _choice(rng, FURNITURE_CLASS_WEIGHTS, n_furniture))

        points, bgcodes = _sample_located(sampler, rng, n_hydrants, lambda r, k: sampler.along(r, k, (0.5, 2.0)))
        _add_components(components, allocator, rng, plan, points, bgcodes, np.full(n_hydrants, "0113"))

        points, bgcodes = sampler.locate(sampler.spaced(STREETLIGHT_SPACING_M / scale, 1.0))
        codes = _add_components(components, allocator, rng, plan, points, bgcodes, np.full(len(points), "0118"))
        for k, code in enumerate(codes):
            streetlights.append((code, f"{code[:6]}-LG{(k // 40) + 1:04d}", 150 if k % 4 else 250))

    stall_sites = _stall_sites(plans, samplers, rng, scale)
    illegal = _illegal_buildings(plans, rng, scale, now)
    alarms = _alarms(rng, components, manhole_codes, manhole_sensors, scale, now)
    cases = _cases(rng, components, plans, samplers, scale, now)
    return Population(components, manhole_sensors, streetlights, stall_sites, illegal, alarms, cases)


def _stall_sites(plans, samplers, rng, scale: int) -> list[tuple]:
    total = STALL_SITES * scale
    occupied_total = round(OCCUPIED_STALL_SITES * scale)
    occupied_flags = np.zeros(total, dtype=bool)
    occupied_flags[rng.choice(total, size=occupied_total, replace=False)] = True
    rows = []
    k = 0
    for plan, sampler, n in zip(plans, samplers, _share(plans, samplers, total)):
        points, bgcodes = _sample_located(sampler, rng, n, lambda r, m: sampler.along(r, m, (2.0, 6.0)))
        for point, bgcode in zip(plan.to_4490(points), bgcodes):
            capacity = int(rng.integers(8, 61))
            occupied = int(rng.integers(1, capacity + 1)) if occupied_flags[k] else 0
            k += 1
            rows.append((f"SZ{bgcode[:6]}{k:06d}", f"{plan.town.name}疏导点{k}", bgcode[:6], bgcode, capacity, occupied, "17:00-22:00", point))
    return rows


def _illegal_buildings(plans, rng, scale: int, now: datetime) -> list[tuple]:
    rows = []
    per_town = max(1, ILLEGAL_BUILDINGS * scale // len(plans))
    statuses = {"confirmed": 0.4, "rectifying": 0.3, "demolished": 0.2, "legalised": 0.1}
    found = {"drone": 0.45, "patrol": 0.35, "public_report": 0.15, "other": 0.05}
    for plan in plans:
        sampler = RoadsideSampler(plan)
        points, bgcodes = _sample_located(sampler, rng, per_town, lambda r, m: sampler.along(r, m, (10.0, 40.0)))
        sizes = rng.uniform(6, 25, size=(per_town, 2))
        shapes = [box(x - w / 2, y - h / 2, x + w / 2, y + h / 2) for (x, y), (w, h) in zip(shapely.get_coordinates(points), sizes)]
        for geom, bgcode, status, how in zip(plan.to_4490(shapes), bgcodes, _choice(rng, statuses, per_town), _choice(rng, found, per_town)):
            confirmed_at = now - timedelta(days=float(rng.uniform(1, 700)))
            rows.append((bgcode[:6], status, how, "执法中队", confirmed_at, shapely.MultiPolygon([geom])))
    return rows


def _alarms(rng, components: Components, manhole_codes, manhole_sensors, scale: int, now: datetime) -> list[tuple]:
    """A year of manhole alarms; those of the last two days may still be open."""
    n = ALARMS_PER_DAY * 365 * scale
    raised = [now - timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 365 * 86400, size=n))[::-1]]
    covers = np.array(manhole_codes)[rng.integers(len(manhole_codes), size=n)]
    types = _choice(rng, ALARM_TYPE_WEIGHTS, n)
    rows = []
    open_covers: set = set()
    open_pairs: set = set()  # at most one open alarm per cover and type
    for raised_at, cover, alarm_type in zip(raised, covers, types):
        age_h = (now - raised_at).total_seconds() / 3600
        still_open = age_h < 48 and rng.random() < 0.25 and (cover, alarm_type) not in open_pairs
        if still_open:
            status, cleared_at = ("acknowledged" if rng.random() < 0.4 else "open"), None
            open_covers.add(cover)
            open_pairs.add((cover, alarm_type))
        else:
            status = "cleared"
            cleared_at = min(now, raised_at + timedelta(minutes=float(rng.uniform(5, 240))))
        reading = {"displacement": 12.0, "opened": 90.0, "overflow": 35.0, "methane": 25000.0}[alarm_type] * rng.uniform(0.8, 2)
        rows.append((cover, alarm_type, int(rng.integers(1, 4)), status, float(reading), raised_at, cleared_at))
    index = {row[0]: i for i, row in enumerate(manhole_sensors)}
    for cover in open_covers:
        code, device, _state, battery = manhole_sensors[index[cover]]
        manhole_sensors[index[cover]] = (code, device, "alarm", battery)
    return rows


CASE_STEPS = ("filed", "dispatched", "processing", "handled", "closed")


@dataclass
class Cases:
    """A year of cases as columns; times are ISO strings (UTC) or None where a step has not happened."""

    columns: dict[str, list]
    events: list[tuple[int, str, str]]

    def __len__(self) -> int:
        return len(self.columns["case_no"])


def _iso(now: datetime, seconds_ago: np.ndarray) -> np.ndarray:
    moments = np.datetime64(now.replace(tzinfo=None), "s") - seconds_ago.astype("timedelta64[s]")
    return np.datetime_as_string(moments, unit="s", timezone="UTC")


def _cases(rng, components: Components, plans, samplers, scale: int, now: datetime) -> Cases:
    """A year of cases through 信息采集 -> 立案 -> 派遣 -> 处理 -> 反馈 -> 核查结案, as far as the clock allows."""
    n = CASES_PER_DAY * 365 * scale
    ago = np.sort(rng.uniform(0, 365 * 86400, size=n))[::-1]
    is_component = rng.random(n) < 0.45
    component_idx = rng.integers(len(components), size=n)
    event_idx = rng.integers(len(EVENT_CLASSES), size=n)
    limit_h = np.where(is_component, 24.0, np.array([h for *_rest, h in EVENT_CLASSES], dtype=float)[event_idx])

    # Event cases sit beside the roads of a town chosen by its size; component cases at their component.
    town_weights = np.array([sampler.length for sampler in samplers])
    town = rng.choice(len(plans), size=n, p=town_weights / town_weights.sum())
    geom = np.empty(n, dtype=object)
    bgcode = np.empty(n, dtype=object)
    for t, (plan, sampler) in enumerate(zip(plans, samplers)):
        chosen = np.flatnonzero((town == t) & ~is_component)
        points, codes = _sample_located(sampler, rng, len(chosen), lambda r, m: sampler.along(r, m, (-5.0, 5.0)))
        geom[chosen] = plan.to_4490(points)
        bgcode[chosen] = codes
    comp = np.flatnonzero(is_component)
    comp_geom = np.empty(len(components), dtype=object)
    comp_geom[:] = components.geom
    geom[comp] = comp_geom[component_idx[comp]]
    bgcode[comp] = np.array(components.bgcode, dtype=object)[component_idx[comp]]
    objcode = np.full(n, None, dtype=object)
    objcode[comp] = np.array(components.objcode, dtype=object)[component_idx[comp]]

    voided = rng.random(n) < 0.04
    stuck = rng.random(n) > CASE_CLOSURE_RATE
    delays_h = np.column_stack([
        rng.uniform(0.1, 1.5, n), rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 2.0, n),
        rng.uniform(0.2, 0.8, n) * limit_h, rng.uniform(0.2, 4.0, n),
    ])
    step_ago = ago[:, None] - np.cumsum(delays_h, axis=1) * 3600
    happened = step_ago >= 0
    happened[stuck, 3:] = False
    happened[voided, :] = False
    void_ago = ago - rng.uniform(0.2, 2.0, n) * 3600
    void_happened = voided & (void_ago >= 0)

    states = np.array(["reported", *CASE_STEPS], dtype=object)[happened.sum(axis=1)]
    states[void_happened] = "voided"
    step_iso = {step: _iso(now, step_ago[:, k]) for k, step in enumerate(CASE_STEPS)}
    columns: dict[str, list] = {
        "case_no": [f"{now.year}{seq:08d}" for seq in range(1, n + 1)],
        "kind": np.where(is_component, "component", "event").tolist(),
        "component_class_code": [code[6:10] if code else None for code in objcode],
        "event_class_code": [None if c else EVENT_CLASSES[e][0] for c, e in zip(is_component, event_idx)],
        "objcode": objcode.tolist(),
        "bgcode": bgcode.tolist(),
        "geom": geom.tolist(),
        "source": _choice(rng, CASE_SOURCE_WEIGHTS, n).tolist(),
        "state": states.tolist(),
        "reported_at": _iso(now, ago).tolist(),
        "deadline_at": np.where(happened[:, 1], _iso(now, step_ago[:, 1] - limit_h * 3600), None).tolist(),
    }
    for k, step in enumerate(CASE_STEPS):
        if step != "processing":
            columns[f"{step}_at"] = np.where(happened[:, k], step_iso[step], None).tolist()

    events = [(i + 1, "reported", at) for i, at in enumerate(columns["reported_at"])]
    for k, step in enumerate(CASE_STEPS):
        rows = np.flatnonzero(happened[:, k])
        events += zip((rows + 1).tolist(), [step] * len(rows), step_iso[step][rows].tolist())
    rows = np.flatnonzero(void_happened)
    events += zip((rows + 1).tolist(), ["voided"] * len(rows), _iso(now, void_ago[rows]).tolist())
    return Cases(columns, events)


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)
