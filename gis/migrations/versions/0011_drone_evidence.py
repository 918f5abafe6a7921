"""Drone evidence: what a detection job measured while registering, and which nuisance checks a candidate passed.

A reviewer judges a candidate better knowing how well the flights were put on top of each other
(residual, overlap, tie points and inliers, shift/rotation/scale) and what the candidate was
tested against (vegetation, season, shadow, vehicle, height gain).

Revision ID: 0011
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
ALTER TABLE city.drone_detection ADD COLUMN registration jsonb;
COMMENT ON COLUMN city.drone_detection.registration IS
    'residual_p95_px, overlap_share, tie_points, inliers, shift_px, rotation_deg, scale, source, dsm_offset_m';
ALTER TABLE city.change_candidate ADD COLUMN checks_passed text[] NOT NULL DEFAULT '{}';
""")


def downgrade() -> None:
    op.execute("""
ALTER TABLE city.change_candidate DROP COLUMN checks_passed;
ALTER TABLE city.drone_detection DROP COLUMN registration;
""")
