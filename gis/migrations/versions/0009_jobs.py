"""One job table for every background job (imports, change detections): `city.job`, claimed with
SKIP LOCKED, kept alive by a heartbeat, requeued when its worker dies, cancellable, with
progress. `city.import_job` and `city.drone_detection` become views of it (their readers keep
their columns); change candidates refer to the job that found them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE city.job (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('import', 'detection')),
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    result jsonb CHECK (result IS NULL OR jsonb_typeof(result) = 'object'),
    progress real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    done bigint NOT NULL DEFAULT 0 CHECK (done >= 0),
    total bigint CHECK (total >= 0),
    phase text,
    cancel_requested boolean NOT NULL DEFAULT false,
    error text,
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    worker text,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    heartbeat_at timestamptz,
    finished_at timestamptz,
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CHECK (state <> 'failed' OR error IS NOT NULL),
    CHECK ((state = 'running') = (worker IS NOT NULL))
);
CREATE INDEX job_open_idx ON city.job (kind, id) WHERE state IN ('queued', 'running');
CREATE INDEX job_created_idx ON city.job (created_at);

-- detections keep their ids (change candidates point at them); imports are numbered after them
INSERT INTO city.job (id, kind, state, payload, result, progress, cancel_requested, error, worker, created_by,
                      created_at, updated_at, started_at, heartbeat_at, finished_at)
SELECT id, 'detection', state,
       jsonb_build_object('before_id', before_id, 'after_id', after_id, 'before_dsm_id', before_dsm_id,
                          'after_dsm_id', after_dsm_id),
       CASE WHEN state = 'succeeded' THEN jsonb_build_object(
           'residual_px', residual_px, 'candidates_found', candidates_found, 'candidates_queued', candidates_queued,
           'dropped_registered', dropped_registered, 'dropped_known_illegal', dropped_known_illegal,
           'dropped_dismissed', dropped_dismissed, 'dropped_already_queued', dropped_already_queued,
           'dropped_outside_city', dropped_outside_city, 'change_map_id', change_map_id) END,
       progress, cancel_requested, error, CASE WHEN state = 'running' THEN 'migrated' END, created_by,
       created_at, coalesce(heartbeat_at, created_at), started_at, heartbeat_at, finished_at
FROM city.drone_detection;
SELECT setval('city.job_id_seq', coalesce((SELECT max(id) FROM city.job), 0) + 1, false);
INSERT INTO city.job (kind, state, payload, result, done, total, phase, error, worker, created_by, created_at,
                      updated_at, finished_at)
SELECT 'import', CASE state WHEN 'running' THEN 'failed' WHEN 'queued' THEN 'failed' ELSE state END,
       jsonb_build_object('file_name', file_name, 'options', options, 'api_key_id', api_key_id),
       CASE WHEN report IS NOT NULL THEN jsonb_build_object('report', report) END,
       rows_done, rows_total, phase,
       CASE WHEN state IN ('queued', 'running') THEN 'the import worker stopped before finishing (migration); nothing was imported' ELSE error END,
       NULL, coalesce('key:' || api_key_id, 'unknown'), created_at, updated_at,
       CASE WHEN state IN ('queued', 'running') THEN now() ELSE finished_at END
FROM city.import_job ORDER BY id;

ALTER TABLE city.change_candidate DROP CONSTRAINT change_candidate_detection_id_fkey,
    ADD CONSTRAINT change_candidate_detection_id_fkey FOREIGN KEY (detection_id) REFERENCES city.job ON DELETE CASCADE;
DROP TABLE city.drone_detection;
DROP TABLE city.import_job;

CREATE VIEW city.import_job AS
SELECT id, state, payload->>'file_name' AS file_name, payload->'options' AS options, done AS rows_done,
       total AS rows_total, phase, result->'report' AS report, error, (payload->>'api_key_id')::integer AS api_key_id,
       cancel_requested, attempts, created_by, created_at, updated_at, started_at, heartbeat_at, finished_at
FROM city.job WHERE kind = 'import';

CREATE VIEW city.drone_detection AS
SELECT id, state, progress, (payload->>'before_id')::bigint AS before_id, (payload->>'after_id')::bigint AS after_id,
       (payload->>'before_dsm_id')::bigint AS before_dsm_id, (payload->>'after_dsm_id')::bigint AS after_dsm_id,
       cancel_requested, error, (result->>'residual_px')::real AS residual_px,
       (result->>'candidates_found')::integer AS candidates_found,
       (result->>'candidates_queued')::integer AS candidates_queued,
       (result->>'dropped_registered')::integer AS dropped_registered,
       (result->>'dropped_known_illegal')::integer AS dropped_known_illegal,
       (result->>'dropped_dismissed')::integer AS dropped_dismissed,
       (result->>'dropped_already_queued')::integer AS dropped_already_queued,
       (result->>'dropped_outside_city')::integer AS dropped_outside_city,
       (result->>'change_map_id')::bigint AS change_map_id, attempts, created_by, created_at, started_at,
       heartbeat_at, finished_at
FROM city.job WHERE kind = 'detection';
"""

DOWNGRADE = """
DROP VIEW city.drone_detection;
DROP VIEW city.import_job;
CREATE TABLE city.import_job (
    id bigserial PRIMARY KEY,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    file_name text NOT NULL,
    options jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    rows_done bigint NOT NULL DEFAULT 0 CHECK (rows_done >= 0),
    rows_total bigint CHECK (rows_total >= 0),
    phase text,
    report jsonb,
    error text,
    api_key_id integer REFERENCES city.api_key ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK ((state IN ('succeeded', 'failed')) = (finished_at IS NOT NULL)),
    CHECK (state <> 'failed' OR error IS NOT NULL)
);
CREATE INDEX import_job_created_idx ON city.import_job (created_at);
INSERT INTO city.import_job (state, file_name, options, rows_done, rows_total, phase, report, error, api_key_id,
                             created_at, updated_at, finished_at)
SELECT CASE WHEN state IN ('cancelled', 'queued', 'running') THEN 'failed' ELSE state END, payload->>'file_name',
       coalesce(payload->'options', '{}'), done, total, phase, result->'report',
       CASE WHEN state IN ('cancelled', 'queued', 'running') THEN coalesce(error, 'cancelled (downgrade)') ELSE error END,
       (SELECT k.id FROM city.api_key k WHERE k.id = (payload->>'api_key_id')::integer), created_at, updated_at,
       CASE WHEN state IN ('cancelled', 'queued', 'running') THEN now() ELSE finished_at END
FROM city.job WHERE kind = 'import' ORDER BY id;

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
INSERT INTO city.drone_detection (id, state, before_id, after_id, before_dsm_id, after_dsm_id, progress,
    cancel_requested, error, residual_px, candidates_found, candidates_queued, dropped_registered,
    dropped_known_illegal, dropped_dismissed, dropped_already_queued, dropped_outside_city, change_map_id,
    created_by, created_at, started_at, heartbeat_at, finished_at)
SELECT id, state, (payload->>'before_id')::bigint, (payload->>'after_id')::bigint, (payload->>'before_dsm_id')::bigint,
       (payload->>'after_dsm_id')::bigint, progress, cancel_requested, error, (result->>'residual_px')::real,
       (result->>'candidates_found')::integer, (result->>'candidates_queued')::integer,
       (result->>'dropped_registered')::integer, (result->>'dropped_known_illegal')::integer,
       (result->>'dropped_dismissed')::integer, (result->>'dropped_already_queued')::integer,
       (result->>'dropped_outside_city')::integer, (result->>'change_map_id')::bigint, created_by, created_at,
       started_at, heartbeat_at, finished_at
FROM city.job WHERE kind = 'detection';
SELECT setval('city.drone_detection_id_seq', coalesce((SELECT max(id) FROM city.drone_detection), 0) + 1, false);
ALTER TABLE city.change_candidate DROP CONSTRAINT change_candidate_detection_id_fkey,
    ADD CONSTRAINT change_candidate_detection_id_fkey FOREIGN KEY (detection_id) REFERENCES city.drone_detection ON DELETE CASCADE;
DROP TABLE city.job;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
