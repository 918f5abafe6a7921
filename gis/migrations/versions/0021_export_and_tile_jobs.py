"""Exports and tile jobs join the one job system: `city.job` takes the kinds `export` (a layer
written to a file, downloadable when done), `tile_archive` (a PMTiles/MBTiles archive of the
city's vector tiles or imagery) and `tile_seed` (a running server's tile cache warmed).

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE city.job DROP CONSTRAINT job_kind_check;
ALTER TABLE city.job ADD CONSTRAINT job_kind_check CHECK (kind IN ('import', 'detection', 'export', 'tile_archive', 'tile_seed'));
"""

DOWNGRADE = """
DELETE FROM city.job WHERE kind IN ('export', 'tile_archive', 'tile_seed');
ALTER TABLE city.job DROP CONSTRAINT job_kind_check;
ALTER TABLE city.job ADD CONSTRAINT job_kind_check CHECK (kind IN ('import', 'detection'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
