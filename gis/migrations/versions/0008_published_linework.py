"""Published layers may declare `linework_below`, as catalogue layers do.

Below that zoom a polygon layer's tiles hold its boundaries as lines, each shared edge once
(layers.catalogue.Layer.linework_below).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE city.published_layer ADD COLUMN linework_below smallint "
               "CHECK (linework_below BETWEEN 1 AND 24 AND linework_below > minzoom)")


def downgrade() -> None:
    op.execute("ALTER TABLE city.published_layer DROP COLUMN linework_below")
