"""A reading is stored once: one row per datastream and phenomenon time (`sensor_reading_once`).

A gateway that sends a batch again (it never saw the answer) stored every reading twice under one
Observation id (`{datastream}@{time}`); the alarm rules already skipped the repeats, but charts and
counts saw both. Earlier repeats are removed (the first received is kept); the unique key replaces
the plain index on the same columns, and every month partition gets it (ops.partitions makes them
with PARTITION OF). Ingest inserts with ON CONFLICT DO NOTHING (ops.readings).

Revision ID: 0024
Revises: 0021
Create Date: 2026-11-30
"""

from alembic import op

revision = "0024"
down_revision = "0021"
branch_labels = None
depends_on = None

UPGRADE = """
DELETE FROM city.sensor_reading r
USING (SELECT tableoid, ctid, row_number() OVER (PARTITION BY datastream_id, phenomenon_time
                                                  ORDER BY received_at, tableoid, ctid) AS nth
       FROM city.sensor_reading) repeated
WHERE r.tableoid = repeated.tableoid AND r.ctid = repeated.ctid AND repeated.nth > 1;
DROP INDEX city.sensor_reading_stream_idx;
ALTER TABLE city.sensor_reading ADD CONSTRAINT sensor_reading_once UNIQUE (datastream_id, phenomenon_time);
COMMENT ON CONSTRAINT sensor_reading_once ON city.sensor_reading IS
    'one reading per datastream and phenomenon time: a batch sent again is stored once (ops.readings)';
"""

DOWNGRADE = """
ALTER TABLE city.sensor_reading DROP CONSTRAINT sensor_reading_once;
CREATE INDEX sensor_reading_stream_idx ON city.sensor_reading (datastream_id, phenomenon_time);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
