"""The layer catalogue: each layer the platform ships is one declaration.

At run time every reader (vector tiles, OGC API Features, TileJSON, style.json, exports, imports,
the planners' queries, the wall's layer panel) resolves layers through the one live catalogue,
`layers.live.LiveCatalogue`: these declarations plus the layers published in `city.published_layer`.
Adding a layer is adding one `Layer(...)` here (or one row there).

`where` and `relation` are trusted SQL fragments written here by developers, never user input.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


GeometryType = Literal["Point", "LineString", "Polygon", "MultiPolygon", "Geometry"]
LowZoom = Literal["count_per_grid", "cluster"]


# Per-grid count classes (from, below, circle radius in px at z14): 1–4, 5–19, 20–99, 100 and more
# components in a unit grid of ≈10,000 m².
COUNT_CLASSES: tuple[tuple[int, int | None, float], ...] = ((1, 5, 3.0), (5, 20, 4.5), (20, 100, 6.5), (100, None, 9.0))


class Layer(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    title: str
    description: str = ""
    group: Literal["boundaries", "base", "components", "operations", "enforcement"]
    relation: str = Field(description="schema-qualified table or view the layer reads")
    key: str = Field(description="column that identifies a feature")
    geometry_type: GeometryType
    properties: tuple[str, ...] = Field(description="columns exposed in tiles and features")
    where: str | None = None
    source_tables: tuple[str, ...] = Field(
        default=(), description="base tables whose changes change this layer (default: relation)"
    )
    datetime_column: str | None = None
    district_column: str | None = "district_code"
    minzoom: int = Field(default=0, ge=0, le=24)
    maxzoom: int = Field(default=22, ge=0, le=24)
    lowzoom: LowZoom | None = Field(
        default=None, description="what tiles below minzoom hold instead of features"
    )
    linework_below: int | None = Field(
        default=None, ge=1, le=24,
        description="below this zoom (and from minzoom) tiles hold a polygon layer's boundaries as lines, "
                    "each shared edge once and straight runs merged, without attributes",
    )
    tile_feature_budget: int = Field(default=20_000, gt=0)
    detail_minzoom: int = Field(
        default=16, ge=0, le=24,
        description="zoom from which tiles carry every declared property; below it only the key and the "
                    "properties the style reads (the rest is one Features API request away)",
    )
    editable: bool = False
    style: dict[str, Any] = Field(description="MapLibre layer type, paint and layout")
    legend: str = ""

    @model_validator(mode="after")
    def _linework_draws_polygon_outlines(self) -> Layer:
        # A mesh of adjacent polygons drawn as outlines draws every shared edge twice, in as many
        # short segments as the polygons have sides; its linework is each edge once, merged.
        if self.linework_below is None:
            return self
        if self.geometry_type not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"linework_below needs a polygon layer, not {self.geometry_type}")
        if self.style.get("type") != "line":
            raise ValueError("linework_below needs a line style: lines are what its tiles hold below that zoom")
        if self.linework_below <= self.minzoom:
            raise ValueError(f"linework_below ({self.linework_below}) must be above minzoom ({self.minzoom})")
        return self

    @property
    def tables(self) -> tuple[str, ...]:
        return self.source_tables or (self.relation,)

    @cached_property
    def style_properties(self) -> frozenset[str]:
        """Properties the style reads with a ["get", name] expression anywhere in it."""
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, list):
                if len(node) >= 2 and node[0] == "get" and isinstance(node[1], str):
                    found.add(node[1])
                for item in node:
                    walk(item)
            elif isinstance(node, dict):
                for item in node.values():
                    walk(item)

        walk(self.style)
        return frozenset(found)

    def count_styles(self) -> list[dict[str, Any]]:
        """MapLibre style layers (without source) drawing the per-grid count circles below minzoom:
        one per class of count, each sized by zoom. A filter and a zoom interpolation are what
        every converter reads (QGIS 3.22 reads no step, interpolation or sqrt on a property)."""
        if not self.lowzoom or self.minzoom == 0:
            return []
        styles = []
        for low, high, radius in COUNT_CLASSES:
            bounds: list[Any] = [[">=", ["get", "count"], low]] + ([["<", ["get", "count"], high]] if high else [])
            styles.append({
                "id": f"{self.id}-counts-{low}", "type": "circle", "maxzoom": self.minzoom,
                "filter": ["all", ["has", "count"], *bounds],
                "paint": {
                    "circle-color": self.colour, "circle-opacity": 0.5,
                    "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, radius / 2, 14, radius],
                    "circle-stroke-color": "#ffffff", "circle-stroke-width": 0.5,
                },
            })
        return styles

    @property
    def colour(self) -> str:
        """The layer's own colour as a plain colour (a data expression's fallback), e.g. for its counts."""
        paint = self.style.get("paint", {})
        for prop in ("circle-color", "fill-color", "line-color"):
            colour = paint.get(prop)
            if isinstance(colour, str):
                return colour
            if isinstance(colour, list) and colour and isinstance(colour[-1], str):
                return colour[-1]
        return "#90a4ae"

    def tile_properties(self, z: int) -> tuple[str, ...]:
        """The columns a tile at zoom z carries besides the geometry: the key first, then the
        declared properties, or below `detail_minzoom` only those the style reads. Attributes are
        most of a tile's bytes (a stall-site tile at z13: 82 KB with them, 11 KB without), and a
        map drawing thousands of features needs them only for the one that is clicked."""
        styled = self.style_properties
        wanted = self.properties if z >= self.detail_minzoom else [p for p in self.properties if p in styled]
        return tuple(dict.fromkeys((self.key, *wanted)))


def _circle(color: str, radius: float = 3.0, stroke: str = "#0b1726") -> dict[str, Any]:
    return {
        "type": "circle",
        "paint": {
            "circle-color": color,
            "circle-radius": ["interpolate", ["linear"], ["zoom"], 12, radius * 0.6, 18, radius * 2],
            "circle-stroke-color": stroke,
            "circle-stroke-width": 0.5,
        },
    }


def _outline(color: str, width: float, dash: list[float] | None = None) -> dict[str, Any]:
    paint: dict[str, Any] = {"line-color": color, "line-width": width}
    if dash:
        paint["line-dasharray"] = dash
    return {"type": "line", "paint": paint}


def _fill(color: str, opacity: float, outline: str, outline_minzoom: int | None = None) -> dict[str, Any]:
    paint: dict[str, Any] = {"fill-color": color, "fill-opacity": opacity, "fill-outline-color": outline}
    if outline_minzoom is not None:
        # Outlines only from that zoom: below it a feature is a few pixels, and its outline would
        # double the vertices drawn for it.
        paint["fill-antialias"] = ["step", ["zoom"], False, outline_minzoom, True]
    return {"type": "fill", "paint": paint}


COMPONENT_PROPERTIES = ("objcode", "objname", "class_code", "bgcode", "objstate", "district_code")
FURNITURE_CLASSES = ("0121", "0122", "0123", "0126", "0138", "0203", "0301", "0305", "0501", "0690")

CATALOGUE: tuple[Layer, ...] = (
    Layer(
        id="districts", title="区县 Districts and counties", group="boundaries",
        relation="city.district", key="code", geometry_type="MultiPolygon",
        properties=("code", "name", "kind", "area_m2"), district_column="code",
        style=_outline("#4fc3f7", 2.0), legend="GB/T 2260 district / county boundary",
    ),
    Layer(
        id="streets", title="街道 Streets (sub-districts)", group="boundaries",
        relation="city.street", key="code", geometry_type="MultiPolygon",
        properties=("code", "name", "district_code", "area_m2"), minzoom=9, linework_below=16,
        style=_outline("#81d4fa", 1.2, [4, 2]), legend="Street (街道) boundary",
    ),
    Layer(
        id="communities", title="社区 Communities", group="boundaries",
        relation="city.community", key="code", geometry_type="MultiPolygon",
        properties=("code", "name", "street_code", "area_m2"), district_column=None, minzoom=11,
        linework_below=16, style=_outline("#b3e5fc", 0.8, [2, 2]), legend="Community (社区) boundary",
    ),
    Layer(
        id="unit_grids", title="单元网格 Unit grids", group="boundaries",
        relation="city.unit_grid", key="bgcode", geometry_type="MultiPolygon",
        properties=("bgcode", "community_code", "district_code", "responsible_unit_id", "area_m2"),
        minzoom=14, linework_below=16, editable=True,
        style=_outline("#546e7a", 0.5), legend="GB/T 30428.1 unit grid (≈10,000 m²)",
    ),
    Layer(
        id="responsible_grids", title="责任网格 Responsible grids", group="boundaries",
        relation="city.responsible_grid", key="code", geometry_type="MultiPolygon",
        properties=("code", "name", "district_code", "responsible_unit_id", "area_m2"), minzoom=12,
        linework_below=16, style=_outline("#9575cd", 1.0), legend="Area assigned to a responsible unit",
    ),
    Layer(
        id="water", title="水系 Water", group="base",
        relation="city.water", key="id", geometry_type="MultiPolygon",
        properties=("name", "kind"), district_column=None,
        style=_fill("#1565c0", 0.6, "#1e88e5"), legend="Grand Canal, rivers and lakes",
    ),
    Layer(
        id="roads", title="道路 Roads", group="base",
        relation="city.road", key="id", geometry_type="LineString",
        properties=("name", "road_class"), district_column=None, minzoom=10,
        style={
            "type": "line",
            "paint": {
                "line-color": ["match", ["get", "road_class"], "arterial", "#607d8b", "secondary", "#546e7a", "#455a64"],
                "line-width": ["interpolate", ["linear"], ["zoom"], 10, 0.5, 16, 4],
            },
        },
        legend="Street network",
    ),
    Layer(
        id="buildings", title="登记建筑 Registered buildings", group="base",
        relation="city.building", key="id", geometry_type="MultiPolygon",
        properties=("name", "use_type", "floors", "height_m", "permit_no", "district_code"), minzoom=14,
        editable=True, style=_fill("#37474f", 0.7, "#546e7a", outline_minzoom=16),
        legend="Registered (permitted) building",
    ),
    Layer(
        id="manhole_covers", title="智能井盖 Smart manhole covers", group="components",
        relation="city.manhole_cover_v", key="objcode", geometry_type="Point",
        properties=(*COMPONENT_PROPERTIES, "sensor_state", "battery_pct"),
        source_tables=("city.component", "city.manhole_sensor"),
        minzoom=15, lowzoom="count_per_grid",
        style={
            "type": "circle",
            "paint": {
                "circle-color": ["match", ["get", "sensor_state"], "alarm", "#ff1744", "offline", "#9e9e9e", "#00e676"],
                "circle-radius": ["interpolate", ["linear"], ["zoom"], 14, 2, 18, 6],
                "circle-stroke-color": "#0b1726", "circle-stroke-width": 0.5,
            },
        },
        legend="Manhole cover (GB/T 30428.2 class 01xx); red = alarm",
    ),
    Layer(
        id="streetlights", title="路灯 Streetlights", group="components",
        relation="city.streetlight_v", key="objcode", geometry_type="Point",
        properties=(*COMPONENT_PROPERTIES, "control_group", "lamp_state"),
        source_tables=("city.component", "city.streetlight"),
        minzoom=15, lowzoom="count_per_grid", style=_circle("#ffd54f", 2.0),
        legend="Streetlight (class 0118)",
    ),
    Layer(
        id="video_cameras", title="视频监控 Video cameras", group="components",
        relation="city.component", key="objcode", geometry_type="Point",
        properties=COMPONENT_PROPERTIES, where="class_code = '0136'",
        minzoom=14, lowzoom="count_per_grid", style=_circle("#40c4ff", 3.0), legend="Video camera (class 0136)",
    ),
    Layer(
        id="city_furniture", title="城市家具 City furniture", group="components",
        relation="city.component", key="objcode", geometry_type="Point",
        properties=COMPONENT_PROPERTIES,
        where="class_code IN (" + ", ".join(f"'{c}'" for c in FURNITURE_CLASSES) + ")",
        minzoom=15, lowzoom="count_per_grid", style=_circle("#a1887f", 2.5),
        legend="Benches, bins, kiosks, toilets, shelters …",
    ),
    Layer(
        id="components", title="管理部件 All components", group="components",
        relation="city.component", key="objcode", geometry_type="Geometry",
        properties=(*COMPONENT_PROPERTIES, "competent_dept_name", "owner_dept_name", "maintainer_dept_name"),
        minzoom=16, lowzoom="count_per_grid", editable=True, style=_circle("#90a4ae", 2.0),
        legend="Every GB/T 30428.2 component",
    ),
    Layer(
        id="stall_sites", title="疏导点 Stall sites", group="operations",
        relation="city.stall_site", key="id", geometry_type="Point",
        properties=("code", "name", "capacity", "occupied", "district_code", "bgcode"),
        datetime_column="updated_at", minzoom=14, lowzoom="count_per_grid", editable=True,
        style={
            "type": "circle",
            "paint": {
                # a match, not a case: QGIS 3.22's style converter reads match but not case
                "circle-color": ["match", ["get", "occupied"], 0, "#69f0ae", "#ffab40"],
                "circle-radius": ["interpolate", ["linear"], ["zoom"], 11, 2, 18, 8],
                "circle-stroke-color": "#0b1726", "circle-stroke-width": 0.5,
            },
        },
        legend="Stall site; orange = occupied",
    ),
    Layer(
        id="alarms", title="井盖告警 Open manhole alarms", group="operations",
        relation="city.alarm", key="id", geometry_type="Point",
        properties=("objcode", "alarm_type", "severity", "status", "raised_at", "district_code"),
        where="status <> 'cleared' AND raised_at >= city.open_alarms_since()", datetime_column="raised_at",
        style={
            "type": "circle",
            "paint": {
                "circle-color": "#ff1744", "circle-radius": 6, "circle-opacity": 0.85,
                "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5,
            },
        },
        legend="Manhole sensor alarm not yet cleared",
    ),
    Layer(
        id="cases", title="案卷 Open cases", group="operations",
        relation="city.case_file", key="id", geometry_type="Point",
        properties=("case_no", "kind", "state", "source", "event_class_code", "responsible_unit_id", "reported_at",
                    "deadline_at", "district_code", "bgcode"),
        where="state NOT IN ('closed', 'evaluated', 'voided')", datetime_column="reported_at",
        minzoom=14, lowzoom="count_per_grid", style=_circle("#ea80fc", 3.5), legend="Case being handled (立案 → 结案)",
    ),
    Layer(
        id="illegal_buildings", title="违法建设 Illegal buildings", group="enforcement",
        relation="city.illegal_building", key="id", geometry_type="MultiPolygon",
        properties=("status", "found_by", "confirmed_by", "confirmed_at", "area_m2", "district_code"),
        datetime_column="confirmed_at", minzoom=10, editable=True,
        style=_fill("#ff5252", 0.55, "#ff1744"), legend="Illegal-building record",
    ),
    Layer(
        id="change_candidates", title="待核查变化 Drone change candidates", group="enforcement",
        relation="city.change_candidate", key="id", geometry_type="MultiPolygon",
        properties=("score", "area_m2", "height_gain_m", "before_id", "after_id", "detection_id", "district_code"),
        where="status = 'pending'", datetime_column="created_at", minzoom=12,
        style=_outline("#ffea00", 2.0, [2, 1]), legend="New structure seen by drone, awaiting review",
    ),
)
