"""Live operations: the case workflow with working-hour time limits, operations roles, SensorThings
readings partitioned by month, and alarm rules as data.

- Roles `dispatcher`, `field_unit`, `supervisor`, `device`; a key may be tied to one responsible
  unit (by its code: units are reloaded with the demo city, their codes stay).
- The working calendar: working periods per ISO weekday, and days that differ (holidays, and the
  make-up working days 调休 that follow them). Time limits of cases run on it.
- Cases gain their responsible unit, the 80 % warning and 督办 escalation times, 核查 (checked) and
  缓办 (deferred) states, an evaluation; each `case_event` names its action, and the reason and
  approver of a return/void/extend/defer.
- Sensors as OGC SensorThings: observed properties, one datastream per cover and property,
  readings partitioned by month on their phenomenon time (a month is dropped whole for retention),
  the latest value per datastream, the alarm rules, and each rule's running state per cover.
- At most one open alarm per cover and type (older duplicates are cleared first).
- The cover layer (`manhole_cover_v`) reads its latest values from `sensor_latest`.

Revision ID: 0014
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None

# As revision 0003 wrote them (a migration must not import another's module: alembic loads them by path).
COMPONENT_COLUMNS = """
    c.objcode, c.objname, c.class_code, c.district_code, c.bgcode, c.objstate, c.in_use,
    c.competent_dept_name, c.owner_dept_name, c.maintainer_dept_name, c.ordate, c.chdate,
    c.datasource, c.note, c.geom, c.geom_3857"""
MANHOLE_CLASSES = "'0101','0102','0103','0104','0105','0106','0107','0108','0109','0110','0111','0112','0114'"
OLD_ROLES = "'viewer', 'enforcement', 'reviewer', 'editor', 'admin'"
NEW_ROLES = OLD_ROLES + ", 'dispatcher', 'field_unit', 'supervisor', 'device'"
OLD_CASE_STATES = "'reported', 'filed', 'dispatched', 'processing', 'handled', 'closed', 'evaluated', 'voided', 'returned'"
NEW_CASE_STATES = OLD_CASE_STATES + ", 'checked', 'deferred'"
OLD_ALARM_TYPES = "'displacement', 'opened', 'overflow', 'methane'"
NEW_ALARM_TYPES = OLD_ALARM_TYPES + ", 'low_battery'"

UPGRADE = f"""
ALTER TABLE city.api_key DROP CONSTRAINT api_key_role_check;
ALTER TABLE city.api_key ADD CONSTRAINT api_key_role_check CHECK (role IN ({NEW_ROLES}));
ALTER TABLE city.api_key ADD COLUMN responsible_unit_code text;

CREATE TABLE city.working_period (
    weekday smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts time NOT NULL,
    ends time NOT NULL CHECK (ends > starts),
    PRIMARY KEY (weekday, starts)
);
COMMENT ON TABLE city.working_period IS 'working hours per ISO weekday (1 = Monday), Asia/Shanghai';
INSERT INTO city.working_period (weekday, starts, ends)
SELECT d, s, e FROM generate_series(1, 5) d, (VALUES (time '08:30', time '12:00'), (time '13:30', time '18:00')) p(s, e);

CREATE TABLE city.calendar_day (
    day date PRIMARY KEY,
    working boolean NOT NULL,
    name text NOT NULL
);
COMMENT ON TABLE city.calendar_day IS 'days that differ from their weekday: holidays (working = false) and make-up working days (working = true, Monday hours)';

ALTER TABLE city.case_file DROP CONSTRAINT case_file_state_check;
ALTER TABLE city.case_file ADD CONSTRAINT case_file_state_check CHECK (state IN ({NEW_CASE_STATES}));
ALTER TABLE city.case_file
    ADD COLUMN responsible_unit_id integer REFERENCES city.responsible_unit ON DELETE SET NULL,
    ADD COLUMN warn_at timestamptz,
    ADD COLUMN warned_at timestamptz,
    ADD COLUMN escalated_at timestamptz,
    ADD COLUMN checked_at timestamptz,
    ADD COLUMN evaluated_at timestamptz,
    ADD COLUMN evaluation smallint CHECK (evaluation BETWEEN 1 AND 5),
    ADD COLUMN alarm_id bigint REFERENCES city.alarm ON DELETE SET NULL;
CREATE INDEX case_file_unit_idx ON city.case_file (responsible_unit_id);
CREATE INDEX case_file_open_deadline_idx ON city.case_file (deadline_at)
    WHERE state IN ('dispatched', 'processing', 'deferred');

ALTER TABLE city.case_event
    ADD COLUMN action text,
    ADD COLUMN reason text,
    ADD COLUMN approver text,
    ADD COLUMN details jsonb;

-- at most one open alarm per cover and type
UPDATE city.alarm a SET status = 'cleared', cleared_at = greatest(a.raised_at, now())
WHERE a.status <> 'cleared' AND EXISTS (
    SELECT 1 FROM city.alarm b WHERE b.objcode = a.objcode AND b.alarm_type = a.alarm_type
      AND b.status <> 'cleared' AND (b.raised_at, b.id) > (a.raised_at, a.id));
CREATE UNIQUE INDEX alarm_one_open_idx ON city.alarm (objcode, alarm_type) WHERE status <> 'cleared';
ALTER TABLE city.alarm DROP CONSTRAINT alarm_alarm_type_check;
ALTER TABLE city.alarm ADD CONSTRAINT alarm_alarm_type_check CHECK (alarm_type IN ({NEW_ALARM_TYPES}));
ALTER TABLE city.alarm ADD COLUMN flapping boolean NOT NULL DEFAULT false;

ALTER TABLE city.manhole_sensor ADD COLUMN interval_s integer NOT NULL DEFAULT 60 CHECK (interval_s > 0);
CREATE INDEX manhole_sensor_last_report_idx ON city.manhole_sensor (last_report_at);

CREATE TABLE city.observed_property (
    code text PRIMARY KEY,
    name text NOT NULL,
    definition text NOT NULL,
    unit_name text NOT NULL,
    unit_symbol text NOT NULL
);
INSERT INTO city.observed_property VALUES
    ('tilt_deg', '井盖倾角 tilt', 'cityops:tilt', 'degree', '°'),
    ('lid_open', '井盖开启 lid open', 'cityops:lid_open', 'flag (0/1)', ''),
    ('water_level_cm', '井内水位 water level', 'cityops:water_level', 'centimetre', 'cm'),
    ('methane_ppm', '甲烷浓度 methane', 'cityops:methane', 'parts per million', 'ppm'),
    ('battery_pct', '电量 battery', 'cityops:battery', 'percent', '%'),
    ('signal_dbm', '信号强度 signal', 'cityops:signal', 'decibel-milliwatt', 'dBm');

CREATE TABLE city.datastream (
    id bigserial PRIMARY KEY,
    objcode char(16) NOT NULL REFERENCES city.manhole_sensor ON DELETE CASCADE,
    observed_property text NOT NULL REFERENCES city.observed_property,
    UNIQUE (objcode, observed_property)
);

CREATE TABLE city.sensor_reading (
    datastream_id bigint NOT NULL,
    phenomenon_time timestamptz NOT NULL,
    result double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (phenomenon_time);
CREATE INDEX sensor_reading_stream_idx ON city.sensor_reading (datastream_id, phenomenon_time);
COMMENT ON TABLE city.sensor_reading IS 'one partition per month (sensor_reading_YYYYMM), made on demand by ops.readings; retention drops whole months';

CREATE TABLE city.sensor_latest (
    datastream_id bigint PRIMARY KEY REFERENCES city.datastream ON DELETE CASCADE,
    phenomenon_time timestamptz NOT NULL,
    result double precision NOT NULL
);

CREATE TABLE city.alarm_rule (
    alarm_type text PRIMARY KEY CHECK (alarm_type IN ({NEW_ALARM_TYPES})),
    observed_property text NOT NULL REFERENCES city.observed_property,
    above boolean NOT NULL,
    threshold double precision NOT NULL,
    clear_threshold double precision NOT NULL,
    hold_readings integer NOT NULL DEFAULT 1 CHECK (hold_readings >= 1),
    hold_seconds integer NOT NULL DEFAULT 0 CHECK (hold_seconds >= 0),
    clear_readings integer NOT NULL DEFAULT 1 CHECK (clear_readings >= 1),
    flap_changes integer NOT NULL DEFAULT 6 CHECK (flap_changes >= 2),
    flap_window_s integer NOT NULL DEFAULT 600 CHECK (flap_window_s > 0),
    severity smallint NOT NULL DEFAULT 2 CHECK (severity BETWEEN 1 AND 3),
    event_class_code char(4) REFERENCES city.event_class,
    CHECK (CASE WHEN above THEN clear_threshold <= threshold ELSE clear_threshold >= threshold END)
);
COMMENT ON TABLE city.alarm_rule IS 'raise when the property is above (or below) threshold for hold_readings readings and hold_seconds; clear when beyond clear_threshold for clear_readings readings; flap_changes condition changes within flap_window_s mark the cover flapping (one alarm, held open)';
INSERT INTO city.alarm_rule (alarm_type, observed_property, above, threshold, clear_threshold, hold_readings,
                             hold_seconds, clear_readings, severity, event_class_code) VALUES
    ('displacement', 'tilt_deg', true, 10, 5, 2, 0, 2, 2, '0402'),
    ('opened', 'lid_open', true, 0.5, 0.5, 1, 0, 2, 1, '0402'),
    ('overflow', 'water_level_cm', true, 30, 20, 3, 0, 3, 2, '0401'),
    ('methane', 'methane_ppm', true, 5000, 2500, 2, 0, 3, 1, '0401'),
    ('low_battery', 'battery_pct', false, 15, 25, 3, 0, 1, 3, NULL);

CREATE TABLE city.alarm_state (
    objcode char(16) NOT NULL REFERENCES city.manhole_sensor ON DELETE CASCADE,
    alarm_type text NOT NULL REFERENCES city.alarm_rule ON DELETE CASCADE,
    breaching boolean NOT NULL DEFAULT false,
    streak integer NOT NULL DEFAULT 0,
    streak_since timestamptz,
    last_time timestamptz,
    changes timestamptz[] NOT NULL DEFAULT '{{}}',
    flapping boolean NOT NULL DEFAULT false,
    PRIMARY KEY (objcode, alarm_type)
);
-- The cover layer shows the latest values from city.sensor_latest: readings do not rewrite the cover
-- row (whose writes notify the change feed and recount grids); only state changes do.
CREATE OR REPLACE VIEW city.manhole_cover_v AS
SELECT {COMPONENT_COLUMNS},
    s.device_id, coalesce(s.state, 'unmonitored') AS sensor_state,
    coalesce(round(v.battery_pct)::smallint, s.battery_pct) AS battery_pct,
    coalesce(v.tilt_deg::real, s.tilt_deg) AS tilt_deg,
    coalesce(v.water_level_cm::real, s.water_level_cm) AS water_level_cm,
    coalesce(v.methane_ppm::real, s.methane_ppm) AS methane_ppm,
    greatest(v.last_report_at, s.last_report_at) AS last_report_at
FROM city.component c LEFT JOIN city.manhole_sensor s USING (objcode)
LEFT JOIN LATERAL (
    SELECT max(l.result) FILTER (WHERE d.observed_property = 'battery_pct') AS battery_pct,
           max(l.result) FILTER (WHERE d.observed_property = 'tilt_deg') AS tilt_deg,
           max(l.result) FILTER (WHERE d.observed_property = 'water_level_cm') AS water_level_cm,
           max(l.result) FILTER (WHERE d.observed_property = 'methane_ppm') AS methane_ppm,
           max(l.phenomenon_time) AS last_report_at
    FROM city.datastream d JOIN city.sensor_latest l ON l.datastream_id = d.id
    WHERE d.objcode = c.objcode AND s.objcode IS NOT NULL
) v ON true
WHERE c.class_code IN ({MANHOLE_CLASSES});

COMMENT ON TABLE city.alarm_state IS 'per cover and rule: whether the last reading breached, for how many readings and since when, recent condition changes (flap detection)';
"""

DOWNGRADE = f"""
CREATE OR REPLACE VIEW city.manhole_cover_v AS
SELECT {COMPONENT_COLUMNS},
    s.device_id, coalesce(s.state, 'unmonitored') AS sensor_state, s.battery_pct,
    s.tilt_deg, s.water_level_cm, s.methane_ppm, s.last_report_at
FROM city.component c LEFT JOIN city.manhole_sensor s USING (objcode)
WHERE c.class_code IN ({MANHOLE_CLASSES});
DROP TABLE city.alarm_state, city.alarm_rule, city.sensor_latest, city.sensor_reading, city.datastream, city.observed_property;
DROP INDEX city.manhole_sensor_last_report_idx;
ALTER TABLE city.manhole_sensor DROP COLUMN interval_s;
ALTER TABLE city.alarm DROP COLUMN flapping;
DELETE FROM city.alarm WHERE alarm_type = 'low_battery';
ALTER TABLE city.alarm DROP CONSTRAINT alarm_alarm_type_check;
ALTER TABLE city.alarm ADD CONSTRAINT alarm_alarm_type_check CHECK (alarm_type IN ({OLD_ALARM_TYPES}));
DROP INDEX city.alarm_one_open_idx;
ALTER TABLE city.case_event DROP COLUMN action, DROP COLUMN reason, DROP COLUMN approver, DROP COLUMN details;
DROP INDEX city.case_file_open_deadline_idx;
DROP INDEX city.case_file_unit_idx;
ALTER TABLE city.case_file DROP COLUMN responsible_unit_id, DROP COLUMN warn_at, DROP COLUMN warned_at,
    DROP COLUMN escalated_at, DROP COLUMN checked_at, DROP COLUMN evaluated_at, DROP COLUMN evaluation, DROP COLUMN alarm_id;
UPDATE city.case_file SET state = 'handled' WHERE state = 'checked';
UPDATE city.case_file SET state = 'dispatched' WHERE state = 'deferred';
ALTER TABLE city.case_file DROP CONSTRAINT case_file_state_check;
ALTER TABLE city.case_file ADD CONSTRAINT case_file_state_check CHECK (state IN ({OLD_CASE_STATES}));
DROP TABLE city.calendar_day, city.working_period;
ALTER TABLE city.api_key DROP COLUMN responsible_unit_code;
DELETE FROM city.api_key WHERE role IN ('dispatcher', 'field_unit', 'supervisor', 'device');
ALTER TABLE city.api_key DROP CONSTRAINT api_key_role_check;
ALTER TABLE city.api_key ADD CONSTRAINT api_key_role_check CHECK (role IN ({OLD_ROLES}));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
