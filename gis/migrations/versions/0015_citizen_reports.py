"""Citizen reports (市民城管通) over Open311 GeoReport v2: reports, their photos, the reporter's
steps, the "was this fixed?" answers, rewards, residential compounds (public locations inside one
are snapped to it) and the Open311 rate-limit counters. Owned by `ops.reports`.

Revision ID: 0015
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE city.residential_compound (
    id serial PRIMARY KEY,
    name text NOT NULL,
    community_code char(12) REFERENCES city.community,
    geom geometry(Polygon, 4490) NOT NULL CHECK (NOT ST_IsEmpty(geom) AND ST_IsValid(geom)),
    -- where reports inside the compound are shown publicly
    public_point geometry(Point, 4490) GENERATED ALWAYS AS (ST_PointOnSurface(geom)) STORED
);
CREATE INDEX residential_compound_geom_idx ON city.residential_compound USING gist (geom);

CREATE TABLE city.citizen_report (
    id bigserial PRIMARY KEY,
    token text NOT NULL UNIQUE,
    service_code text NOT NULL,
    event_class_code char(4) NOT NULL REFERENCES city.event_class,
    case_id bigint REFERENCES city.case_file ON DELETE SET NULL,
    review text NOT NULL DEFAULT 'pending' CHECK (review IN ('pending', 'accepted', 'rejected', 'duplicate')),
    review_reason text,
    reviewed_by text,
    duplicate_of bigint REFERENCES city.citizen_report ON DELETE SET NULL,
    CHECK ((review = 'duplicate') = (duplicate_of IS NOT NULL)),
    me_too integer NOT NULL DEFAULT 0 CHECK (me_too >= 0),
    description text CHECK (length(description) <= 4000),
    original_description text,
    moderation_reason text,
    attributes jsonb NOT NULL DEFAULT '{}',
    -- private: never in a public answer
    address_string text,
    reporter_key bytea CHECK (reporter_key IS NULL OR length(reporter_key) = 32),
    reporter_name text,
    reporter_phone text,
    reporter_email text,
    device_id text,
    client_ip inet,
    declared_crs text NOT NULL,
    geom geometry(Point, 4490) NOT NULL,
    -- public
    public_geom geometry(Point, 4490) NOT NULL,
    compound_id integer REFERENCES city.residential_compound ON DELETE SET NULL,
    bgcode char(15) REFERENCES city.unit_grid,
    district_code char(6) NOT NULL REFERENCES city.district,
    responsible_unit_id integer REFERENCES city.responsible_unit,
    requested_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    reopened_count smallint NOT NULL DEFAULT 0
);
-- the duplicate check: reports of one service within 50 m
CREATE INDEX citizen_report_geog_idx ON city.citizen_report USING gist ((geom::geography));
CREATE INDEX citizen_report_requested_idx ON city.citizen_report (requested_at);
CREATE INDEX citizen_report_case_idx ON city.citizen_report (case_id);
CREATE INDEX citizen_report_duplicate_idx ON city.citizen_report (duplicate_of) WHERE duplicate_of IS NOT NULL;

-- every case a report has had (a reopen opens a new, linked case)
CREATE TABLE city.report_case (
    report_id bigint NOT NULL REFERENCES city.citizen_report ON DELETE CASCADE,
    case_id bigint NOT NULL REFERENCES city.case_file ON DELETE CASCADE,
    opened_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_id, case_id)
);

-- what the reporter sees happen (beside the case's own events)
CREATE TABLE city.report_update (
    id bigserial PRIMARY KEY,
    report_id bigint NOT NULL REFERENCES city.citizen_report ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL CHECK (kind IN ('submitted', 'accepted', 'rejected', 'moderated', 'merged', 'me_too',
                                       'closed', 'reopened', 'feedback', 'reward')),
    note text NOT NULL
);
CREATE INDEX report_update_report_idx ON city.report_update (report_id, at);

CREATE TABLE city.report_media (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    report_id bigint REFERENCES city.citizen_report ON DELETE CASCADE,
    content bytea NOT NULL,
    width integer NOT NULL CHECK (width > 0),
    height integer NOT NULL CHECK (height > 0),
    exif_lon double precision,
    exif_lat double precision,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_media_report_idx ON city.report_media (report_id);

CREATE TABLE city.report_feedback (
    report_id bigint NOT NULL REFERENCES city.citizen_report ON DELETE CASCADE,
    case_id bigint NOT NULL REFERENCES city.case_file ON DELETE CASCADE,
    fixed boolean NOT NULL,
    rating smallint CHECK (rating BETWEEN 1 AND 5),
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_id, case_id)
);

-- one reward per accepted report, and never twice to one reporter for one place and item on one day
CREATE TABLE city.report_reward (
    id bigserial PRIMARY KEY,
    report_id bigint NOT NULL UNIQUE REFERENCES city.citizen_report ON DELETE CASCADE,
    reporter_key bytea NOT NULL,
    service_code text NOT NULL,
    bgcode char(15) NOT NULL,
    day date NOT NULL,
    amount_fen integer NOT NULL CHECK (amount_fen > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (reporter_key, service_code, bgcode, day)
);

-- Every case written recounts its unit grid for the cases layer (0004's statement triggers); without
-- this index that recount reads the whole case table: seconds per citizen report at a million cases.
CREATE INDEX IF NOT EXISTS case_file_bgcode_idx ON city.case_file (bgcode);

-- fixed-window counters of Open311 submissions per device and per IP (losing them on a crash is harmless)
CREATE UNLOGGED TABLE city.report_rate (
    key text NOT NULL,
    window_start timestamptz NOT NULL,
    hits integer NOT NULL,
    PRIMARY KEY (key, window_start)
);
"""

DOWNGRADE = """
DROP INDEX IF EXISTS city.case_file_bgcode_idx;
DROP TABLE city.report_rate;
DROP TABLE city.report_reward;
DROP TABLE city.report_feedback;
DROP TABLE city.report_media;
DROP TABLE city.report_update;
DROP TABLE city.report_case;
DROP TABLE city.citizen_report;
DROP TABLE city.residential_compound;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
