"""The city data model: administrative hierarchy, GB/T 30428 unit grids and components,
stall sites, buildings, illegal buildings, alarms, cases, orthophotos, access keys.

Geometry is stored in CGCS2000 (EPSG:4490). Each spatial table also keeps a generated Web
Mercator copy (`geom_3857`) with its own GiST index so tiles never reproject rows per request,
and polygon tables keep a generated true area in m² (geodesic, on the CGCS2000 ellipsoid ≈ GRS80).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _geometry_columns(geom_type: str, *, with_area: bool = False) -> str:
    columns = f"""
    geom geometry({geom_type}, 4490) NOT NULL
        CHECK (NOT ST_IsEmpty(geom) AND ST_IsValid(geom)),
    geom_3857 geometry({geom_type}, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED"""
    if with_area:
        columns += """,
    area_m2 double precision GENERATED ALWAYS AS (ST_Area(geom::geography)) STORED"""
    return columns


def _spatial_indexes(table: str) -> str:
    return f"""
    CREATE INDEX {table}_geom_idx ON city.{table} USING gist (geom);
    CREATE INDEX {table}_geom_3857_idx ON city.{table} USING gist (geom_3857);"""


UPGRADE = f"""
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE SCHEMA city;
COMMENT ON SCHEMA city IS 'cityops: 城市运行管理服务平台 spatial data (CGCS2000, GB/T 30428)';

-- Administrative hierarchy: city -> district/county (GB/T 2260) -> street (GB/T 10114) -> community
CREATE TABLE city.municipality (
    code char(6) PRIMARY KEY CHECK (code ~ '^[1-9][0-9]{{3}}00$'),
    name text NOT NULL
);

CREATE TABLE city.district (
    code char(6) PRIMARY KEY CHECK (code ~ '^[1-9][0-9]{{5}}$'),
    municipality_code char(6) NOT NULL REFERENCES city.municipality,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('市辖区', '县', '县级市')),
    {_geometry_columns("MultiPolygon", with_area=True)},
    CHECK (left(code, 4) = left(municipality_code, 4))
);
{_spatial_indexes("district")}

CREATE TABLE city.street (
    code char(9) PRIMARY KEY CHECK (code ~ '^[0-9]{{9}}$'),
    district_code char(6) GENERATED ALWAYS AS (left(code, 6)) STORED NOT NULL REFERENCES city.district,
    name text NOT NULL,
    {_geometry_columns("MultiPolygon", with_area=True)}
);
{_spatial_indexes("street")}

CREATE TABLE city.community (
    code char(12) PRIMARY KEY CHECK (code ~ '^[0-9]{{12}}$'),
    street_code char(9) GENERATED ALWAYS AS (left(code, 9)) STORED NOT NULL REFERENCES city.street,
    name text NOT NULL,
    {_geometry_columns("MultiPolygon", with_area=True)}
);
{_spatial_indexes("community")}

-- Base map: the street network and water (the Grand Canal runs through Suqian)
CREATE TABLE city.road (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    road_class text NOT NULL CHECK (road_class IN ('arterial', 'secondary', 'local')),
    width_m real NOT NULL CHECK (width_m > 0),
    {_geometry_columns("LineString")}
);
{_spatial_indexes("road")}

CREATE TABLE city.water (
    id serial PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('canal', 'river', 'lake', 'pond')),
    {_geometry_columns("MultiPolygon", with_area=True)}
);
{_spatial_indexes("water")}

-- Responsible units (责任单位) and the management grids (责任网格) that assign them to areas
CREATE TABLE city.responsible_unit (
    id serial PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    department text NOT NULL,
    phone text,
    district_code char(6) NOT NULL REFERENCES city.district
);

CREATE TABLE city.responsible_grid (
    code text PRIMARY KEY CHECK (code ~ '^[0-9]{{6}}[0-9A-Z]{{1,12}}$'),
    district_code char(6) GENERATED ALWAYS AS (left(code, 6)) STORED NOT NULL REFERENCES city.district,
    name text NOT NULL,
    responsible_unit_id integer NOT NULL REFERENCES city.responsible_unit,
    {_geometry_columns("MultiPolygon", with_area=True)}
);
{_spatial_indexes("responsible_grid")}

-- Unit grids (单元网格, GB/T 30428.1): 15 digits = county 6 + street 3 + community 3 + sequence 3.
-- The older 14-digit CJ/T 213-2005 form is widened to 15 on import (gis.codes).
CREATE TABLE city.unit_grid (
    bgcode char(15) PRIMARY KEY CHECK (bgcode ~ '^[0-9]{{15}}$' AND right(bgcode, 3) <> '000'),
    community_code char(12) GENERATED ALWAYS AS (left(bgcode, 12)) STORED NOT NULL REFERENCES city.community,
    district_code char(6) GENERATED ALWAYS AS (left(bgcode, 6)) STORED NOT NULL REFERENCES city.district,
    name text,
    responsible_unit_id integer REFERENCES city.responsible_unit,
    land_use text,
    ordate date NOT NULL DEFAULT current_date,
    chdate date,
    note text,
    {_geometry_columns("MultiPolygon", with_area=True)},
    CHECK (chdate IS NULL OR chdate >= ordate)
);
{_spatial_indexes("unit_grid")}
CREATE INDEX unit_grid_community_idx ON city.unit_grid (community_code);

-- Management components (管理部件, GB/T 30428.2): 16 digits = county 6 + major 2 + minor 2 + serial 6
CREATE TABLE city.component_class (
    code char(4) PRIMARY KEY CHECK (code ~ '^[0-9]{{4}}$'),
    major char(2) GENERATED ALWAYS AS (left(code, 2)) STORED NOT NULL,
    major_name text NOT NULL,
    name text NOT NULL,
    name_en text NOT NULL,
    geom_type text NOT NULL CHECK (geom_type IN ('Point', 'LineString', 'Polygon')),
    standard text NOT NULL DEFAULT 'GB/T 30428.2-2013',
    is_extension boolean NOT NULL DEFAULT false
);

CREATE TABLE city.component (
    objcode char(16) PRIMARY KEY CHECK (objcode ~ '^[0-9]{{16}}$' AND right(objcode, 6) <> '000000'),
    district_code char(6) GENERATED ALWAYS AS (left(objcode, 6)) STORED NOT NULL REFERENCES city.district,
    class_code char(4) GENERATED ALWAYS AS (substr(objcode, 7, 4)) STORED NOT NULL REFERENCES city.component_class,
    objname text NOT NULL,
    competent_dept_code text,
    competent_dept_name text,
    owner_dept_code text,
    owner_dept_name text,
    maintainer_dept_code text,
    maintainer_dept_name text,
    bgcode char(15) REFERENCES city.unit_grid,
    objstate text NOT NULL DEFAULT '完好' CHECK (objstate IN ('完好', '破损', '丢失', '占用')),
    in_use boolean NOT NULL DEFAULT true,
    ordate date NOT NULL DEFAULT current_date,
    chdate date,
    datasource text NOT NULL DEFAULT '实测' CHECK (datasource IN ('实测', '地形图', '调绘', '其它')),
    picture text,
    note text,
    attrs jsonb NOT NULL DEFAULT '{{}}' CHECK (jsonb_typeof(attrs) = 'object'),
    {_geometry_columns("Geometry")},
    CHECK (bgcode IS NULL OR left(bgcode, 6) = left(objcode, 6)),
    CHECK (chdate IS NULL OR chdate >= ordate)
);
{_spatial_indexes("component")}
CREATE INDEX component_class_idx ON city.component (class_code);
CREATE INDEX component_bgcode_idx ON city.component (bgcode);

-- IoT state of smart manhole covers (one row per instrumented cover)
CREATE TABLE city.manhole_sensor (
    objcode char(16) PRIMARY KEY REFERENCES city.component ON DELETE CASCADE,
    device_id text NOT NULL UNIQUE,
    state text NOT NULL DEFAULT 'normal' CHECK (state IN ('normal', 'alarm', 'offline')),
    battery_pct smallint CHECK (battery_pct BETWEEN 0 AND 100),
    tilt_deg real CHECK (tilt_deg BETWEEN 0 AND 180),
    water_level_cm real,
    methane_ppm real CHECK (methane_ppm >= 0),
    last_report_at timestamptz
);
CREATE INDEX manhole_sensor_state_idx ON city.manhole_sensor (state) WHERE state <> 'normal';

-- Streetlight control (group switching and schedule)
CREATE TABLE city.streetlight (
    objcode char(16) PRIMARY KEY REFERENCES city.component ON DELETE CASCADE,
    control_group text NOT NULL,
    schedule_on time NOT NULL DEFAULT '18:30',
    schedule_off time NOT NULL DEFAULT '06:00',
    lamp_power_w smallint NOT NULL DEFAULT 150 CHECK (lamp_power_w > 0),
    lamp_state text NOT NULL DEFAULT 'off' CHECK (lamp_state IN ('on', 'off', 'fault'))
);
CREATE INDEX streetlight_group_idx ON city.streetlight (control_group);

-- Stall sites (摊点疏导点)
CREATE TABLE city.stall_site (
    id serial PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    district_code char(6) NOT NULL REFERENCES city.district,
    bgcode char(15) REFERENCES city.unit_grid,
    capacity integer NOT NULL CHECK (capacity > 0),
    occupied integer NOT NULL DEFAULT 0 CHECK (occupied >= 0),
    open_hours text,
    manager text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    {_geometry_columns("Point")},
    CONSTRAINT stall_site_occupied_within_capacity CHECK (occupied <= capacity),
    CHECK (bgcode IS NULL OR left(bgcode, 6) = district_code)
);
{_spatial_indexes("stall_site")}

-- Registered (permitted) buildings
CREATE TABLE city.building (
    id bigserial PRIMARY KEY,
    district_code char(6) NOT NULL REFERENCES city.district,
    name text,
    use_type text NOT NULL DEFAULT 'residential'
        CHECK (use_type IN ('residential', 'commercial', 'industrial', 'public', 'mixed', 'other')),
    floors smallint CHECK (floors > 0),
    height_m real CHECK (height_m > 0),
    permit_no text,
    registered_on date,
    {_geometry_columns("MultiPolygon", with_area=True)}
);
{_spatial_indexes("building")}

-- Illegal-building records (违法建设)
CREATE TABLE city.illegal_building (
    id bigserial PRIMARY KEY,
    district_code char(6) NOT NULL REFERENCES city.district,
    status text NOT NULL DEFAULT 'confirmed'
        CHECK (status IN ('confirmed', 'rectifying', 'demolished', 'legalised')),
    found_by text NOT NULL CHECK (found_by IN ('drone', 'patrol', 'public_report', 'other')),
    confirmed_by text NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    note text,
    {_geometry_columns("MultiPolygon", with_area=True)}
);
{_spatial_indexes("illegal_building")}

-- Sensor alarms of smart manhole covers
CREATE TABLE city.alarm (
    id bigserial PRIMARY KEY,
    objcode char(16) NOT NULL REFERENCES city.component ON DELETE CASCADE,
    district_code char(6) GENERATED ALWAYS AS (left(objcode, 6)) STORED NOT NULL,
    alarm_type text NOT NULL CHECK (alarm_type IN ('displacement', 'opened', 'overflow', 'methane')),
    severity smallint NOT NULL DEFAULT 2 CHECK (severity BETWEEN 1 AND 3),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'cleared')),
    reading real,
    raised_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    {_geometry_columns("Point")},
    CHECK ((status = 'cleared') = (cleared_at IS NOT NULL)),
    CHECK (cleared_at IS NULL OR cleared_at >= raised_at)
);
{_spatial_indexes("alarm")}
CREATE INDEX alarm_open_idx ON city.alarm (alarm_type) WHERE status <> 'cleared';
CREATE INDEX alarm_raised_idx ON city.alarm (raised_at);

-- An alarm sits where its cover is, unless the sender gives a position.
CREATE FUNCTION city.alarm_default_geom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.geom IS NULL THEN
        SELECT c.geom INTO NEW.geom FROM city.component c WHERE c.objcode = NEW.objcode;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER alarm_default_geom BEFORE INSERT ON city.alarm
    FOR EACH ROW EXECUTE FUNCTION city.alarm_default_geom();

-- Cases (案卷): 信息采集 -> 立案 -> 派遣 -> 处理 -> 反馈 -> 核查结案 -> 评价
CREATE TABLE city.event_class (
    code char(4) PRIMARY KEY CHECK (code ~ '^[0-9]{{4}}$'),
    major_name text NOT NULL,
    name text NOT NULL,
    time_limit_hours integer NOT NULL CHECK (time_limit_hours > 0)
);

CREATE TABLE city.case_file (
    id bigserial PRIMARY KEY,
    case_no text NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN ('component', 'event')),
    component_class_code char(4) REFERENCES city.component_class,
    event_class_code char(4) REFERENCES city.event_class,
    objcode char(16) REFERENCES city.component ON DELETE SET NULL,
    district_code char(6) NOT NULL REFERENCES city.district,
    bgcode char(15) REFERENCES city.unit_grid,
    address text,
    description text,
    source text NOT NULL CHECK (source IN ('supervisor', 'video', 'public', 'superior', 'sensor')),
    state text NOT NULL DEFAULT 'reported' CHECK (state IN (
        'reported', 'filed', 'dispatched', 'processing', 'handled', 'closed', 'evaluated',
        'voided', 'returned')),
    reported_at timestamptz NOT NULL DEFAULT now(),
    filed_at timestamptz,
    dispatched_at timestamptz,
    deadline_at timestamptz,
    handled_at timestamptz,
    closed_at timestamptz,
    {_geometry_columns("Point")},
    CHECK ((kind = 'component') = (component_class_code IS NOT NULL)),
    CHECK ((kind = 'event') = (event_class_code IS NOT NULL)),
    CHECK (filed_at IS NULL OR filed_at >= reported_at),
    CHECK (dispatched_at IS NULL OR dispatched_at >= filed_at),
    CHECK (handled_at IS NULL OR handled_at >= dispatched_at),
    CHECK (closed_at IS NULL OR closed_at >= handled_at),
    CHECK (state NOT IN ('closed', 'evaluated') OR closed_at IS NOT NULL)
);
{_spatial_indexes("case_file")}
CREATE INDEX case_file_state_idx ON city.case_file (state);
CREATE INDEX case_file_reported_idx ON city.case_file (reported_at);
CREATE INDEX case_file_closed_idx ON city.case_file (closed_at);

CREATE TABLE city.case_event (
    id bigserial PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES city.case_file ON DELETE CASCADE,
    state text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    actor text,
    note text
);
CREATE INDEX case_event_case_idx ON city.case_event (case_id, at);

-- Orthophotos and DSMs (Cloud-Optimized GeoTIFFs written by the platform)
CREATE TABLE city.orthophoto (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('rgb', 'dsm', 'change')),
    captured_on date,
    gsd_m real NOT NULL CHECK (gsd_m > 0 AND gsd_m < 100),
    width integer NOT NULL CHECK (width > 0),
    height integer NOT NULL CHECK (height > 0),
    band_count smallint NOT NULL CHECK (band_count > 0),
    source_crs text NOT NULL,
    file_path text NOT NULL UNIQUE,
    file_bytes bigint NOT NULL CHECK (file_bytes > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    {_geometry_columns("Polygon", with_area=True)}
);
{_spatial_indexes("orthophoto")}

-- Access keys: only a SHA-256 of each key is kept
CREATE TABLE city.api_key (
    id serial PRIMARY KEY,
    key_prefix text NOT NULL UNIQUE,
    key_hash bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    role text NOT NULL CHECK (role IN ('viewer', 'enforcement', 'reviewer', 'editor', 'admin')),
    districts char(6)[] NOT NULL DEFAULT '{{}}',
    label text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
"""

DOWNGRADE = "DROP SCHEMA city CASCADE;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
