"""Import jobs: uploads imported in the background, their progress and report, readable from any process.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
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
-- `import --mode replace` deletes components: without these, each deleted row scans alarms and cases.
CREATE INDEX alarm_objcode_idx ON city.alarm (objcode);
CREATE INDEX case_file_objcode_idx ON city.case_file (objcode);
""")


def downgrade() -> None:
    op.execute("DROP INDEX city.case_file_objcode_idx; DROP INDEX city.alarm_objcode_idx; DROP TABLE city.import_job")
