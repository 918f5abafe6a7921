"""Change notifications for never-stale tile caches and live figures, grid counts for low-zoom
tiles, and layers published at run time.

Every table a layer reads gets three statement-level AFTER triggers with transition tables, so a
100,000-row UPDATE sends one `pg_notify('cityops_changes', {"table", "bbox"})` carrying the
extent (EPSG:4490) of the old and new geometries together. Whoever writes — the API, a script,
psql — the listeners hear it. A table without geometry (e.g. `manhole_sensor`) is located through
its foreign key to a table that has one (`component`); one with neither sends `"bbox": null`
(meaning "anywhere").

A `count_per_grid` layer shows, below its minzoom, how many features each unit grid (单元网格)
holds: counting a million components per tile is too slow for the city-wide view, so the counts
live in `city.grid_count` (per layer and grid, at the centroid of the grid's features).
`city.grid_count_layer` registers the counted layers (the API registers its catalogue's); the
same statement triggers recount the grids a statement touched, inside the writing transaction.

`city.published_layer` holds layers added while the platform runs (same fields as a catalogue
`Layer`); inserting a row installs the triggers on its tables and notifies, so the layer appears
in tiles, TileJSON and style.json at once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Base tables of the catalogue's layers (Layer.tables) at the time of this migration; a test checks
# that every table of the current catalogue is watched.
WATCHED_TABLES = (
    "city.district", "city.street", "city.community", "city.unit_grid", "city.responsible_grid",
    "city.water", "city.road", "city.building", "city.component", "city.manhole_sensor",
    "city.streetlight", "city.stall_site", "city.alarm", "city.case_file", "city.illegal_building",
)

UPGRADE = r"""
-- One statement's changed rows, located: SQL text over the transition tables old_rows/new_rows
-- yielding a `geom` (EPSG:4490) column, plus `bgcode` where the geometry table has one.
CREATE FUNCTION city.changed_rows_sql(op text, args text[]) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    changed text := CASE op
        WHEN 'INSERT' THEN 'SELECT * FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT * FROM old_rows'
        ELSE 'SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows' END;
BEGIN
    IF cardinality(args) = 0 THEN           -- the table has its own geometry
        RETURN format('SELECT c.* FROM (%s) c', changed);
    ELSIF args[1] = 'none' THEN              -- no geometry anywhere: nothing to locate
        RETURN NULL;
    END IF;
    -- args = {geometry table, foreign-key column here, referenced column there}
    RETURN format('SELECT g.* FROM (%s) c JOIN %s g ON g.%I = c.%I', changed, args[1], args[3], args[2]);
END $$;

CREATE TABLE city.grid_count_layer (
    layer_id text PRIMARY KEY,
    relation text NOT NULL,
    where_sql text,
    tables text[] NOT NULL
);
COMMENT ON TABLE city.grid_count_layer IS 'layers counted per unit grid; relation and where_sql are trusted catalogue SQL';

CREATE TABLE city.grid_count (
    layer_id text NOT NULL REFERENCES city.grid_count_layer ON DELETE CASCADE,
    bgcode char(15) NOT NULL,
    n integer NOT NULL CHECK (n > 0),
    geom geometry(Point, 4490) NOT NULL,
    geom_3857 geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    PRIMARY KEY (layer_id, bgcode)
);
CREATE INDEX grid_count_geom_idx ON city.grid_count USING gist (geom);
CREATE INDEX grid_count_geom_3857_idx ON city.grid_count USING gist (geom_3857);

-- Recount a layer in the given grids (NULL: all of them).
CREATE FUNCTION city.recount_grids(layer text, grids bpchar[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    def city.grid_count_layer;
    counted text;
BEGIN
    SELECT * INTO def FROM city.grid_count_layer WHERE layer_id = layer;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    counted := format('SELECT bgcode, count(*)::int AS n, ST_Centroid(ST_Collect(geom)) AS geom FROM %s '
                      'WHERE bgcode IS NOT NULL AND (%s) %s GROUP BY bgcode', def.relation,
                      coalesce(def.where_sql, 'TRUE'), CASE WHEN grids IS NULL THEN '' ELSE 'AND bgcode = ANY($2)' END);
    IF grids IS NULL THEN
        DELETE FROM city.grid_count WHERE layer_id = layer;
    ELSE
        EXECUTE format('DELETE FROM city.grid_count g WHERE layer_id = $1 AND bgcode = ANY($2) '
                       'AND NOT EXISTS (SELECT 1 FROM (%s) c WHERE c.bgcode = g.bgcode)', counted) USING layer, grids;
    END IF;
    EXECUTE format('INSERT INTO city.grid_count (layer_id, bgcode, n, geom) SELECT $1, bgcode, n, geom FROM (%s) c '
                   'ON CONFLICT (layer_id, bgcode) DO UPDATE SET n = EXCLUDED.n, geom = EXCLUDED.geom', counted)
        USING layer, grids;
END $$;

-- Recount, for every counted layer reading the table, the given grids (NULL: all of them).
CREATE FUNCTION city.recount_changed(source text, grids bpchar[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    layer record;
BEGIN
    IF cardinality(grids) = 0 THEN
        RETURN;
    END IF;
    FOR layer IN SELECT layer_id FROM city.grid_count_layer WHERE source = ANY(tables) ORDER BY layer_id LOOP
        PERFORM city.recount_grids(layer.layer_id, grids);
    END LOOP;
END $$;

CREATE FUNCTION city.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    source text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    -- TG_ARGV counts from 0; its slice counts from 1 like every other array
    located text := city.changed_rows_sql(TG_OP, coalesce(TG_ARGV[0:TG_NARGS - 1], '{}'::text[]));
    box box2d;
    any_row boolean;
    grids bpchar[];
BEGIN
    -- Transition tables are visible here only, not in functions called from here.
    IF EXISTS (SELECT 1 FROM city.grid_count_layer WHERE source = ANY(tables)) THEN
        IF located IS NOT NULL THEN
            BEGIN
                EXECUTE format('SELECT coalesce(array_agg(DISTINCT bgcode), ''{}'') FROM (%s) l WHERE bgcode IS NOT NULL', located)
                    INTO grids;
            EXCEPTION WHEN undefined_column THEN    -- the rows carry no unit grid: recount whole layers
                grids := NULL;
            END;
        END IF;
        PERFORM city.recount_changed(source, grids);
    END IF;
    IF located IS NULL THEN
        EXECUTE format('SELECT EXISTS (%s)', CASE TG_OP WHEN 'INSERT' THEN 'SELECT 1 FROM new_rows' ELSE 'SELECT 1 FROM old_rows' END)
            INTO any_row;
        IF any_row THEN
            PERFORM pg_notify('cityops_changes', json_build_object('table', source, 'bbox', NULL)::text);
        END IF;
    ELSE
        EXECUTE format('SELECT ST_Extent(geom) FROM (%s) l', located) INTO box;
        IF box IS NOT NULL THEN
            PERFORM pg_notify('cityops_changes', json_build_object(
                'table', source, 'bbox', json_build_array(ST_XMin(box), ST_YMin(box), ST_XMax(box), ST_YMax(box)))::text);
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- Install the three change triggers on a table (idempotent). A table without a `geom` column is
-- located through its first single-column foreign key to a table that has one.
CREATE FUNCTION city.watch_changes(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    args text := '';
    link record;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table: list the tables behind it in source_tables', tbl;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = 'geom' AND NOT attisdropped) THEN
        SELECT con.confrelid::regclass::text AS geometry_table, here.attname AS fk_column, there.attname AS ref_column
          INTO link
          FROM pg_constraint con
          JOIN pg_attribute here ON here.attrelid = con.conrelid AND here.attnum = con.conkey[1]
          JOIN pg_attribute there ON there.attrelid = con.confrelid AND there.attnum = con.confkey[1]
         WHERE con.conrelid = tbl AND con.contype = 'f' AND cardinality(con.conkey) = 1
           AND EXISTS (SELECT 1 FROM pg_attribute g WHERE g.attrelid = con.confrelid AND g.attname = 'geom' AND NOT g.attisdropped)
         ORDER BY con.conname LIMIT 1;
        args := CASE WHEN link IS NULL THEN quote_literal('none')
                     ELSE format('%L, %L, %L', link.geometry_table, link.fk_column, link.ref_column) END;
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS cityops_changes_insert ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS cityops_changes_update ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS cityops_changes_delete ON %s', tbl);
    EXECUTE format('CREATE TRIGGER cityops_changes_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION city.notify_change(%s)', tbl, args);
    EXECUTE format('CREATE TRIGGER cityops_changes_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION city.notify_change(%s)', tbl, args);
    EXECUTE format('CREATE TRIGGER cityops_changes_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION city.notify_change(%s)', tbl, args);
END $$;

-- Layers published at run time: the same fields as a catalogue Layer declaration.
CREATE TABLE city.published_layer (
    id text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_]{1,62}$'),
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    "group" text NOT NULL DEFAULT 'operations'
        CHECK ("group" IN ('boundaries', 'base', 'components', 'operations', 'enforcement')),
    relation text NOT NULL CHECK (to_regclass(relation) IS NOT NULL),
    key text NOT NULL,
    geometry_type text NOT NULL CHECK (geometry_type IN ('Point', 'LineString', 'Polygon', 'MultiPolygon', 'Geometry')),
    properties text[] NOT NULL DEFAULT '{}',
    "where" text,
    source_tables text[] NOT NULL DEFAULT '{}',
    datetime_column text,
    district_column text,
    minzoom smallint NOT NULL DEFAULT 0 CHECK (minzoom BETWEEN 0 AND 24),
    maxzoom smallint NOT NULL DEFAULT 22 CHECK (maxzoom BETWEEN 0 AND 24),
    lowzoom text CHECK (lowzoom IN ('count_per_grid', 'cluster')),
    tile_feature_budget integer NOT NULL DEFAULT 20000 CHECK (tile_feature_budget > 0),
    editable boolean NOT NULL DEFAULT false,
    style jsonb NOT NULL CHECK (jsonb_typeof(style) = 'object' AND style ? 'type'),
    legend text NOT NULL DEFAULT '',
    published_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE city.published_layer IS 'layers added at run time; "where" and relation are trusted SQL written by administrators';

CREATE FUNCTION city.published_layer_watch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        FOREACH tbl IN ARRAY CASE WHEN cardinality(NEW.source_tables) > 0 THEN NEW.source_tables ELSE ARRAY[NEW.relation] END LOOP
            PERFORM city.watch_changes(tbl::regclass);
        END LOOP;
    END IF;
    PERFORM pg_notify('cityops_changes', json_build_object('table', 'city.published_layer', 'bbox', NULL)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER published_layer_watch AFTER INSERT OR UPDATE OR DELETE ON city.published_layer
    FOR EACH ROW EXECUTE FUNCTION city.published_layer_watch();
"""

DOWNGRADE = """
DROP TABLE city.published_layer;
DROP FUNCTION city.published_layer_watch();
DO $$ DECLARE t record; BEGIN
    FOR t IN SELECT DISTINCT tgrelid::regclass AS tbl FROM pg_trigger WHERE tgname LIKE 'cityops_changes_%' LOOP
        EXECUTE format('DROP TRIGGER cityops_changes_insert ON %1$s; DROP TRIGGER cityops_changes_update ON %1$s; '
                       'DROP TRIGGER cityops_changes_delete ON %1$s', t.tbl);
    END LOOP;
END $$;
DROP FUNCTION city.watch_changes(regclass);
DROP FUNCTION city.notify_change();
DROP FUNCTION city.recount_changed(text, bpchar[]);
DROP FUNCTION city.recount_grids(text, bpchar[]);
DROP TABLE city.grid_count;
DROP TABLE city.grid_count_layer;
DROP FUNCTION city.changed_rows_sql(text, text[]);
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for table in WATCHED_TABLES:
        op.execute(f"SELECT city.watch_changes('{table}'::regclass)")


def downgrade() -> None:
    op.execute(DOWNGRADE)
