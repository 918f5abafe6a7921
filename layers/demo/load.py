"""Load the demo city into PostGIS in one transaction with COPY: it lands whole or not at all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
import shapely
from psycopg import sql

from gis.bulk import rebuilt_after_load
from gis.errors import Conflict
from layers.demo.plan import DISTRICTS, MUNICIPALITY, TownPlan, county_polygons, plan_city
from layers.demo.population import DEPARTMENTS, Cases, Population, now_utc, populate
from ops.calendar import load_calendar

WORKING_CALENDAR = Path(__file__).with_name("working_calendar.yaml")

# (table, rows) progress: called with the table name and how many rows were just written
ProgressCallback = Callable[[str, int, int], None]

# Loaded tables, parents first; TRUNCATE ... CASCADE on the first clears them all on --replace.
CITY_TABLES = (
    "municipality", "district", "street", "community", "responsible_unit", "unit_grid",
    "responsible_grid", "road", "water", "building", "component", "manhole_sensor", "streetlight",
    "stall_site", "illegal_building", "alarm", "case_file", "case_event",
)
SERIAL_TABLES = ("responsible_unit", "road", "water", "building", "stall_site", "illegal_building", "alarm", "case_file", "case_event")
COPY_BATCH = 10_000


@dataclass(frozen=True)
class LoadSummary:
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _ewkb(geoms: Sequence) -> np.ndarray:
    return shapely.to_wkb(shapely.set_srid(np.asarray(geoms, dtype=object), 4490), hex=True, include_srid=True)


def city_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    return {
        table: conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier("city", table))).fetchone()["n"]
        for table in ("district", "unit_grid", "component")
    }


def _copy(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence],
          total: int, progress: ProgressCallback | None) -> int:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier("city", table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    written = 0
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            written += 1
            if progress and written % COPY_BATCH == 0:
                progress(table, COPY_BATCH, total)
    if progress:
        progress(table, written % COPY_BATCH, total)
    return written


class CityWriter:
    """Writes one generated city; each method is one table (or two that belong together)."""

    def __init__(self, conn: psycopg.Connection, plans: list[TownPlan], progress: ProgressCallback | None):
        self.conn = conn
        self.plans = plans
        self.progress = progress
        self.rows: dict[str, int] = {}

    def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        self.rows[table] = _copy(self.conn, table, columns, rows, len(rows), self.progress)

    def make_months(self, table: str, times: Sequence) -> None:
        """The month partitions these times fall in (alarms and case events are partitioned by month).
        Times are datetimes or ISO strings of one format, so min and max are the first and last."""
        if times:
            self.conn.execute("SELECT city.ensure_month_partitions(%s::regclass, %s::timestamptz, %s::timestamptz)",
                              [f"city.{table}", min(times), max(times)])

    def administrative(self) -> None:
        self.copy("municipality", ("code", "name"), [MUNICIPALITY])
        counties = county_polygons(self.plans)
        codes = list(DISTRICTS)
        self.copy("district", ("code", "municipality_code", "name", "kind", "geom"), [
            (code, MUNICIPALITY[0], DISTRICTS[code][0], DISTRICTS[code][1], wkb)
            for code, wkb in zip(codes, _ewkb([counties[c] for c in codes]))
        ])
        streets = [(s["code"], s["name"], wkb) for p in self.plans for s, wkb in zip(p.streets, _ewkb(p.to_4490([s["geom"] for s in p.streets])))]
        self.copy("street", ("code", "name", "geom"), streets)
        communities = [(c["code"], c["name"], wkb) for p in self.plans for c, wkb in zip(p.communities, _ewkb(p.to_4490([c["geom"] for c in p.communities])))]
        self.copy("community", ("code", "name", "geom"), communities)

    def grids(self) -> None:
        units, unit_of_community, companies = [], {}, {}
        for plan in self.plans:
            for community in plan.communities:
                unit_id = len(units) + 1
                district = community["code"][:6]
                units.append((unit_id, f"RU{community['code']}", f"{community['name']}网格工作站", "社区", f"0527-8{unit_id:07d}", district))
                unit_of_community[community["code"]] = unit_id
        for district in DISTRICTS:
            companies[district] = []
            for k, kind in enumerate(("城管执法中队", "环卫服务公司", "市政养护公司"), start=1):
                unit_id = len(units) + 1
                units.append((unit_id, f"RU{district}M{k}", f"{DISTRICTS[district][0]}{kind}", kind, None, district))
                companies[district].append(unit_id)
        self.copy("responsible_unit", ("id", "code", "name", "department", "phone", "district_code"), units)

        grid_rows = []
        for plan in self.plans:
            for grid, wkb in zip(plan.grids, _ewkb(plan.to_4490([g["geom"] for g in plan.grids]))):
                grid_rows.append((grid["bgcode"], f"{grid['bgcode'][-6:]}号网格", unit_of_community[grid["bgcode"][:12]], "2020-01-01", wkb))
        self.copy("unit_grid", ("bgcode", "name", "responsible_unit_id", "ordate", "geom"), grid_rows)

        responsible = []
        for plan in self.plans:
            quadrants = []
            for community in plan.communities:
                cx, cy = community["geom"].centroid.coords[0]
                minx, miny, maxx, maxy = community["geom"].bounds
                for qx0, qy0, qx1, qy1 in ((minx, cy, cx, maxy), (cx, cy, maxx, maxy), (minx, miny, cx, cy), (cx, miny, maxx, cy)):
                    piece = community["geom"].intersection(shapely.box(qx0, qy0, qx1, qy1))
                    if piece.area > 100:
                        quadrants.append((community, shapely.MultiPolygon(shapely.get_parts(piece))))
            for (community, _), wkb in zip(quadrants, _ewkb(plan.to_4490([q for _, q in quadrants]))):
                district = community["code"][:6]
                seq = len(responsible) + 1
                unit = companies[district][seq % 3]
                responsible.append((f"{district}Z{seq:06d}", f"{community['name']}责任片区{seq}", unit, wkb))
        self.copy("responsible_grid", ("code", "name", "responsible_unit_id", "geom"), responsible)

    def base_map(self) -> None:
        roads, water, buildings = [], [], []
        rng = np.random.default_rng(2260)
        for plan in self.plans:
            for road, wkb in zip(plan.roads, _ewkb(plan.to_4490([r["geom"] for r in plan.roads]))):
                roads.append((road["name"], road["road_class"], {"arterial": 40, "secondary": 24, "local": 14}[road["road_class"]], wkb))
            for (name, polygon), wkb in zip(plan.water, _ewkb(plan.to_4490([shapely.MultiPolygon([w]) for _, w in plan.water]))):
                water.append((name, "canal", wkb))
            district_parts = list(plan.district_parts.items())
            centroids = shapely.centroid(np.array(plan.buildings, dtype=object))
            district_of = np.full(len(plan.buildings), district_parts[0][0], dtype=object)
            for code, part in district_parts[1:]:
                district_of[shapely.contains(part, centroids)] = code
            uses = np.array(["residential", "commercial", "industrial", "public", "mixed"])[
                rng.choice(5, size=len(plan.buildings), p=[0.6, 0.18, 0.07, 0.1, 0.05])]
            floors = rng.integers(1, 33, size=len(plan.buildings))
            multi = [shapely.MultiPolygon([b]) for b in plan.buildings]
            for k, (wkb, district, use, f) in enumerate(zip(_ewkb(plan.to_4490(multi)), district_of, uses, floors)):
                buildings.append((district, use, int(f), float(f) * 3.0, f"宿建许字[{2000 + k % 25}]{k:05d}号", wkb))
        self.copy("road", ("name", "road_class", "width_m", "geom"), roads)
        self.copy("water", ("name", "kind", "geom"), water)
        self.copy("building", ("district_code", "use_type", "floors", "height_m", "permit_no", "geom"), buildings)

    def components(self, population: Population) -> None:
        c = population.components
        self.copy(
            "component",
            ("objcode", "objname", "competent_dept_name", "owner_dept_name", "maintainer_dept_name",
             "bgcode", "objstate", "ordate", "datasource", "geom"),
            [
                (code, name, *_departments(code), bgcode, state, ordate, "实测", wkb)
                for code, name, bgcode, state, ordate, wkb in zip(c.objcode, c.objname, c.bgcode, c.objstate, c.ordate, _ewkb(c.geom))
            ],
        )
        self.copy("manhole_sensor", ("objcode", "device_id", "state", "battery_pct"), population.manhole_sensors)
        self.copy("streetlight", ("objcode", "control_group", "lamp_power_w"), population.streetlights)

    def operations(self, population: Population) -> None:
        stalls = population.stall_sites
        self.copy(
            "stall_site",
            ("code", "name", "district_code", "bgcode", "capacity", "occupied", "open_hours", "geom"),
            [(*row[:-1], wkb) for row, wkb in zip(stalls, _ewkb([row[-1] for row in stalls]))],
        )
        illegal = population.illegal_buildings
        self.copy(
            "illegal_building",
            ("district_code", "status", "found_by", "confirmed_by", "confirmed_at", "geom"),
            [(*row[:-1], wkb) for row, wkb in zip(illegal, _ewkb([row[-1] for row in illegal]))],
        )
        self.make_months("alarm", [alarm[5] for alarm in population.alarms])
        self.copy("alarm", ("objcode", "alarm_type", "severity", "status", "reading", "raised_at", "cleared_at"), population.alarms)
        self.cases(population.cases)

    def cases(self, cases: Cases) -> None:
        c = cases.columns
        names = ("case_no", "kind", "component_class_code", "event_class_code", "objcode", "source", "state",
                 "reported_at", "filed_at", "dispatched_at", "deadline_at", "handled_at", "closed_at")
        self.copy(
            "case_file",
            ("id", *names, "district_code", "bgcode", "geom"),
            [(i, *values, bgcode[:6], bgcode, wkb)
             for i, (values, bgcode, wkb) in enumerate(zip(zip(*(c[name] for name in names)), c["bgcode"], _ewkb(c["geom"])), start=1)],
        )
        self.make_months("case_event", [event[2] for event in cases.events])
        self.copy("case_event", ("case_id", "state", "at"), cases.events)

    def live_operations(self) -> None:
        """Each instrumented cover's datastreams, the working calendar, and the demo cases' units as
        their grids route them (after the indexes are back: it is a spatial join)."""
        self.rows["datastream"] = self.conn.execute(
            "INSERT INTO city.datastream (objcode, observed_property) SELECT s.objcode, p.code "
            "FROM city.manhole_sensor s CROSS JOIN city.observed_property p ORDER BY s.objcode, p.code").rowcount
        load_calendar(self.conn, WORKING_CALENDAR)
        self.conn.execute(
            "UPDATE city.case_file c SET responsible_unit_id = coalesce("
            "(SELECT r.responsible_unit_id FROM city.responsible_grid r WHERE ST_Intersects(r.geom, c.geom) ORDER BY r.code LIMIT 1), "
            "g.responsible_unit_id) FROM city.unit_grid g WHERE g.bgcode = c.bgcode")

    def finish(self) -> None:
        for table in SERIAL_TABLES:
            self.conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({t}, 'id'), coalesce((SELECT max(id) FROM {i}), 0) + 1, false)").format(
                    t=sql.Literal(f"city.{table}"), i=sql.Identifier("city", table)
                )
            )


def _departments(objcode: str) -> tuple[str, str, str]:
    """Competent, owning and maintaining departments by the component's major class."""
    return DEPARTMENTS[objcode[6:8]]


def load_demo(conn: psycopg.Connection, *, scale: int = 1, replace: bool = False,
              now: datetime | None = None, progress: ProgressCallback | None = None) -> LoadSummary:
    """Generate the demo city and write it in the caller's transaction (commit is the caller's)."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    existing = city_row_counts(conn)
    if existing["district"] or existing["component"]:
        if not replace:
            raise Conflict(
                f"the database already holds a city ({existing['district']} districts, "
                f"{existing['unit_grid']} unit grids, {existing['component']} components); "
                "nothing was loaded — use --replace to reload the demo over it"
            )
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
            sql.SQL(", ").join(sql.Identifier("city", t) for t in (*CITY_TABLES, "sensor_reading"))))
    report = progress or (lambda _step, _advance, _total: None)
    report("generate", 0, 2)
    plans = plan_city()
    report("generate", 1, 2)
    population = populate(plans, scale=scale, now=now or now_utc())
    report("generate", 1, 2)
    return write_city(conn, plans, population, progress)


def write_city(conn: psycopg.Connection, plans: list[TownPlan], population: Population,
               progress: ProgressCallback | None = None) -> LoadSummary:
    """COPY a generated city into the (empty) city tables, indexes and keys rebuilt after."""
    writer = CityWriter(conn, plans, progress)
    with rebuilt_after_load(conn, [f"city.{table}" for table in CITY_TABLES]):
        writer.administrative()
        writer.grids()
        writer.base_map()
        writer.components(population)
        writer.operations(population)
    writer.finish()
    writer.live_operations()
    conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(sql.Identifier("city", t) for t in CITY_TABLES)))
    return LoadSummary(writer.rows)
