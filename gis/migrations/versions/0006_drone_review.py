"""Drone review: detection jobs, the change-candidate review queue, and display ranges of orthophotos.

A detection job reports its state and progress in its own row, so any process can poll it and
any worker process can run it. Candidates keep the decision made on them: a dismissed
structure is remembered so the next flight does not queue it again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
-- The value range a DSM or change map is coloured over (a DSM's heights depend on the site)
ALTER TABLE city.orthophoto
    ADD COLUMN display_min real,
    ADD COLUMN display_max real,
    ADD CHECK (display_min IS NULL OR display_min < display_max);

CREATE TABLE city.drone_detection (
    id bigserial PRIMARY KEY,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    before_id bigint NOT NULL REFERENCES city.orthophoto,
    after_id bigint NOT NULL REFERENCES city.orthophoto,
    before_dsm_id bigint REFERENCES city.orthophoto,
    after_dsm_id bigint REFERENCES city.orthophoto,
    progress real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    cancel_requested boolean NOT NULL DEFAULT false,
    error text,
    residual_px real,
    candidates_found integer,
    candidates_queued integer,
    dropped_registered integer,
    dropped_known_illegal integer,
    dropped_dismissed integer,
    dropped_already_queued integer,
    dropped_outside_city integer,
    change_map_id bigint REFERENCES city.orthophoto,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    heartbeat_at timestamptz,
    finished_at timestamptz,
    CHECK (before_id <> after_id),
    CHECK ((before_dsm_id IS NULL) = (after_dsm_id IS NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);
CREATE INDEX drone_detection_open_idx ON city.drone_detection (id) WHERE state IN ('queued', 'running');

CREATE TABLE city.change_candidate (
    id bigserial PRIMARY KEY,
    detection_id bigint NOT NULL REFERENCES city.drone_detection ON DELETE CASCADE,
    district_code char(6) NOT NULL REFERENCES city.district,
    score real NOT NULL CHECK (score BETWEEN 0 AND 1),
    height_gain_m real,
    before_id bigint NOT NULL REFERENCES city.orthophoto,
    after_id bigint NOT NULL REFERENCES city.orthophoto,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'dismissed')),
    reviewer text,
    note text,
    decided_at timestamptz,
    illegal_building_id bigint UNIQUE REFERENCES city.illegal_building,
    created_at timestamptz NOT NULL DEFAULT now(),
    geom geometry(MultiPolygon, 4490) NOT NULL CHECK (NOT ST_IsEmpty(geom) AND ST_IsValid(geom)),
    geom_3857 geometry(MultiPolygon, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    area_m2 double precision GENERATED ALWAYS AS (ST_Area(geom::geography)) STORED,
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK ((status = 'pending') = (reviewer IS NULL)),
    CHECK ((status = 'confirmed') = (illegal_building_id IS NOT NULL))
);
CREATE INDEX change_candidate_geom_idx ON city.change_candidate USING gist (geom);
CREATE INDEX change_candidate_geom_3857_idx ON city.change_candidate USING gist (geom_3857);
CREATE INDEX change_candidate_status_idx ON city.change_candidate (status, district_code);
CREATE INDEX change_candidate_detection_idx ON city.change_candidate (detection_id);
"""

DOWNGRADE = """
DROP TABLE city.change_candidate;
DROP TABLE city.drone_detection;
ALTER TABLE city.orthophoto DROP COLUMN display_min, DROP COLUMN display_max;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
