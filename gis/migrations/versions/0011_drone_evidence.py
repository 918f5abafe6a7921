"""Drone evidence: what a detection job measured while registering, and which nuisance checks a candidate passed.

A reviewer judges a candidate better knowing how well the flights were put on top of each other
(residual, overlap, tie points and inliers, shift/rotation/scale) and what the candidate was
tested against (vegetation, season, shadow, vehicle, height gain). Detection jobs live in
`city.job` (0009): the registration figures are part of a job's result, shown by the
`city.drone_detection` view.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

VIEW = """
CREATE OR REPLACE VIEW city.drone_detection AS
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
       heartbeat_at, finished_at{registration}
FROM city.job WHERE kind = 'detection';
"""


def upgrade() -> None:
    op.execute(VIEW.format(registration=",\n       result->'registration' AS registration"))
    op.execute("""
COMMENT ON COLUMN city.drone_detection.registration IS
    'residual_p95_px, overlap_share, tie_points, inliers, shift_px, rotation_deg, scale, source, dsm_offset_m';
ALTER TABLE city.change_candidate ADD COLUMN checks_passed text[] NOT NULL DEFAULT '{}';
""")


def downgrade() -> None:
    op.execute("ALTER TABLE city.change_candidate DROP COLUMN checks_passed; DROP VIEW city.drone_detection;")
    op.execute(VIEW.format(registration=""))
