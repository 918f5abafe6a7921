"""Alarms and case events partitioned by month, like the sensor readings of 0014.

- `city.alarm` is partitioned by range of `raised_at`, `city.case_event` by range of `at`: one
  partition per calendar month (UTC), named `<table>_YYYYMM`, made ahead of time and on demand by
  `city.ensure_month_partitions`; retention detaches and drops whole months (`ops.partitions`).
  Rows are copied across on upgrade and back on downgrade; ids keep their sequences.
- A unique index on a partitioned table must contain the partition key, so "at most one open
  alarm per cover and type" (0014's `alarm_one_open_idx`) moves to `city.alarm_open`: one row per
  open alarm, kept by a row trigger on `city.alarm` whoever writes. Its primary key
  `alarm_one_open` makes a second open alarm for a cover and type wait for the first writer's
  transaction and then fail exactly as the unique index did. It is also the wall's way to the open
  alarms: `city.open_alarms_since()` (the oldest open alarm's time) lets a query on open alarms
  prune every month before it.
- `case_file.alarm_id` loses its foreign key (a key into a partitioned table must carry the
  partition key); it stays the id of the alarm that opened the case, which retention may drop.

Revision ID: 0017
Revises: 0015
Create Date: 2026-11-29
"""

from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None

ALARM_TYPES = "'displacement', 'opened', 'overflow', 'methane', 'low_battery'"
ALARM_COLUMNS = "id, objcode, alarm_type, severity, status, reading, raised_at, cleared_at, geom, flapping"
CASE_EVENT_COLUMNS = "id, case_id, state, at, actor, note, action, reason, approver, details"
# Months made ahead of now, so writes stamped now() never wait for a partition to be made.
MONTHS_AHEAD = 2


def _alarm_table(partitioned: bool) -> str:
    key = "PRIMARY KEY (id, raised_at)" if partitioned else "PRIMARY KEY (id)"
    return f"""
CREATE TABLE city.alarm (
    id bigint NOT NULL DEFAULT nextval('city.alarm_id_seq'),
    objcode char(16) NOT NULL REFERENCES city.component ON DELETE CASCADE,
    district_code char(6) GENERATED ALWAYS AS (left(objcode, 6)) STORED NOT NULL,
    alarm_type text NOT NULL CHECK (alarm_type IN ({ALARM_TYPES})),
    severity smallint NOT NULL DEFAULT 2 CHECK (severity BETWEEN 1 AND 3),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'cleared')),
    reading real,
    raised_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    geom geometry(Point, 4490) NOT NULL CHECK (NOT ST_IsEmpty(geom) AND ST_IsValid(geom)),
    geom_3857 geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    flapping boolean NOT NULL DEFAULT false,
    CHECK ((status = 'cleared') = (cleared_at IS NOT NULL)),
    CHECK (cleared_at IS NULL OR cleared_at >= raised_at),
    {key}
){" PARTITION BY RANGE (raised_at)" if partitioned else ""};
CREATE INDEX alarm_geom_idx ON city.alarm USING gist (geom);
CREATE INDEX alarm_geom_3857_idx ON city.alarm USING gist (geom_3857);
CREATE INDEX alarm_open_idx ON city.alarm (alarm_type) WHERE status <> 'cleared';
CREATE INDEX alarm_raised_idx ON city.alarm (raised_at);
CREATE INDEX alarm_objcode_idx ON city.alarm (objcode);
CREATE TRIGGER alarm_default_geom BEFORE INSERT ON city.alarm FOR EACH ROW EXECUTE FUNCTION city.alarm_default_geom();
"""


def _case_event_table(partitioned: bool) -> str:
    key = "PRIMARY KEY (id, at)" if partitioned else "PRIMARY KEY (id)"
    return f"""
CREATE TABLE city.case_event (
    id bigint NOT NULL DEFAULT nextval('city.case_event_id_seq'),
    case_id bigint NOT NULL REFERENCES city.case_file ON DELETE CASCADE,
    state text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    actor text,
    note text,
    action text,
    reason text,
    approver text,
    details jsonb,
    {key}
){" PARTITION BY RANGE (at)" if partitioned else ""};
CREATE INDEX case_event_case_idx ON city.case_event (case_id, at);
"""


def _set_aside(table: str) -> str:
    """Rename the table out of the way with its constraints and indexes gone (their names are the
    new table's) and its id sequence kept for the new table."""
    return f"""
ALTER TABLE city.{table} RENAME TO {table}_old;
DO $$ DECLARE i record; BEGIN
    FOR i IN SELECT c.conname FROM pg_constraint c
              WHERE c.conrelid = 'city.{table}_old'::regclass AND c.contype IN ('p', 'u', 'c', 'f') AND c.conparentid = 0 LOOP
        EXECUTE format('ALTER TABLE city.{table}_old DROP CONSTRAINT %I', i.conname);
    END LOOP;
    FOR i IN SELECT x.indexrelid::regclass AS name FROM pg_index x WHERE x.indrelid = 'city.{table}_old'::regclass LOOP
        EXECUTE format('DROP INDEX %s', i.name);
    END LOOP;
END $$;
ALTER SEQUENCE city.{table}_id_seq OWNED BY NONE;
"""


def _take_over(table: str, columns: str) -> str:
    return f"""
INSERT INTO city.{table} ({columns}) SELECT {columns} FROM city.{table}_old;
DROP TABLE city.{table}_old;
ALTER SEQUENCE city.{table}_id_seq OWNED BY city.{table}.id;
"""


UPGRADE = f"""
CREATE FUNCTION city.ensure_month_partitions(parent regclass, first_at timestamptz, last_at timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', first_at AT TIME ZONE 'UTC')::date;
    schema_name text;
    table_name text;
    partition_name text;
    made integer := 0;
BEGIN
    SELECT n.nspname, c.relname INTO schema_name, table_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent AND c.relkind = 'p';
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a partitioned table', parent;
    END IF;
    WHILE month <= date_trunc('month', last_at AT TIME ZONE 'UTC')::date LOOP
        partition_name := table_name || '_' || to_char(month, 'YYYYMM');
        IF to_regclass(format('%I.%I', schema_name, partition_name)) IS NULL THEN
            -- one maker per month: a second waits here, then finds the partition made
            PERFORM pg_advisory_xact_lock(hashtext(schema_name || '.' || partition_name));
            IF to_regclass(format('%I.%I', schema_name, partition_name)) IS NULL THEN
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)', schema_name, partition_name,
                               parent, month::text || ' 00:00+00', (month + interval '1 month')::date::text || ' 00:00+00');
                made := made + 1;
            END IF;
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
    RETURN made;
END $$;
COMMENT ON FUNCTION city.ensure_month_partitions(regclass, timestamptz, timestamptz) IS
    'make the missing month partitions (<table>_YYYYMM, UTC months) of a partitioned table from first_at''s month to last_at''s; returns how many were made';

ALTER TABLE city.case_file DROP CONSTRAINT case_file_alarm_id_fkey;
COMMENT ON COLUMN city.case_file.alarm_id IS 'the alarm that opened the case (city.alarm id; retention may have dropped the alarm''s month)';
DROP INDEX city.alarm_one_open_idx;
{_set_aside("alarm")}
{_alarm_table(partitioned=True)}
CREATE TABLE city.alarm_open (
    objcode char(16) NOT NULL,
    alarm_type text NOT NULL,
    alarm_id bigint NOT NULL UNIQUE,
    raised_at timestamptz NOT NULL,
    CONSTRAINT alarm_one_open PRIMARY KEY (objcode, alarm_type),
    FOREIGN KEY (alarm_id, raised_at) REFERENCES city.alarm (id, raised_at) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX alarm_open_raised_idx ON city.alarm_open (raised_at);
COMMENT ON TABLE city.alarm_open IS 'one row per open (not cleared) alarm, kept by the alarm_keep_open trigger: at most one per cover and type';

CREATE FUNCTION city.alarm_keep_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status <> 'cleared' THEN
        DELETE FROM city.alarm_open WHERE alarm_id = OLD.id;
    END IF;
    IF NEW.status <> 'cleared' THEN
        INSERT INTO city.alarm_open (objcode, alarm_type, alarm_id, raised_at) VALUES (NEW.objcode, NEW.alarm_type, NEW.id, NEW.raised_at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alarm_keep_open AFTER INSERT OR UPDATE OF status, objcode, alarm_type ON city.alarm
    FOR EACH ROW EXECUTE FUNCTION city.alarm_keep_open();

CREATE FUNCTION city.open_alarms_since() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT coalesce(min(raised_at), 'infinity') FROM city.alarm_open
$$;
COMMENT ON FUNCTION city.open_alarms_since() IS 'when the oldest open alarm was raised: "raised_at >= city.open_alarms_since()" prunes the months before it';

SELECT city.ensure_month_partitions('city.alarm', min(raised_at), max(raised_at)) FROM city.alarm_old;
SELECT city.ensure_month_partitions('city.alarm', now(), now() + interval '{MONTHS_AHEAD} months');
{_take_over("alarm", ALARM_COLUMNS)}
SELECT city.watch_changes('city.alarm'::regclass);

{_set_aside("case_event")}
{_case_event_table(partitioned=True)}
SELECT city.ensure_month_partitions('city.case_event', min(at), max(at)) FROM city.case_event_old;
SELECT city.ensure_month_partitions('city.case_event', now(), now() + interval '{MONTHS_AHEAD} months');
{_take_over("case_event", CASE_EVENT_COLUMNS)}
"""

DOWNGRADE = f"""
DROP TABLE city.alarm_open;
DROP FUNCTION city.open_alarms_since();
DROP TRIGGER alarm_keep_open ON city.alarm;
DROP FUNCTION city.alarm_keep_open();
{_set_aside("alarm")}
{_alarm_table(partitioned=False)}
{_take_over("alarm", ALARM_COLUMNS)}
SELECT city.watch_changes('city.alarm'::regclass);
CREATE UNIQUE INDEX alarm_one_open_idx ON city.alarm (objcode, alarm_type) WHERE status <> 'cleared';
UPDATE city.case_file c SET alarm_id = NULL WHERE alarm_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM city.alarm a WHERE a.id = c.alarm_id);
ALTER TABLE city.case_file ADD CONSTRAINT case_file_alarm_id_fkey FOREIGN KEY (alarm_id) REFERENCES city.alarm ON DELETE SET NULL;
COMMENT ON COLUMN city.case_file.alarm_id IS NULL;

{_set_aside("case_event")}
{_case_event_table(partitioned=False)}
{_take_over("case_event", CASE_EVENT_COLUMNS)}
DROP FUNCTION city.ensure_month_partitions(regclass, timestamptz, timestamptz);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
