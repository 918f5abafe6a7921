"""Orthophotos get a display rendition, and their changes reach the change feed.

Each orthophoto keeps its analysis COG (`file_path`: lossless, source CRS, what detection reads)
and gains a display COG (`display_path`: aligned to the WebMercatorQuad grid, JPEG with a mask
for RGB, 256 px blocks) that tiles are read from, with the zooms it was made for. The change
triggers of 0004 on `city.orthophoto` let every process drop cached raster tiles when an
orthophoto is added, replaced or deleted.

Revision ID: 0012
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE city.orthophoto
    ADD COLUMN display_path text UNIQUE,
    ADD COLUMN display_bytes bigint CHECK (display_bytes > 0),
    ADD COLUMN display_minzoom smallint CHECK (display_minzoom BETWEEN 0 AND 24),
    ADD COLUMN display_maxzoom smallint CHECK (display_maxzoom BETWEEN 0 AND 24),
    ADD CONSTRAINT orthophoto_display_complete CHECK (
        (display_path IS NULL) = (display_bytes IS NULL) AND (display_path IS NULL) = (display_minzoom IS NULL)
        AND (display_path IS NULL) = (display_maxzoom IS NULL) AND display_minzoom <= display_maxzoom);
CREATE INDEX orthophoto_kind_captured_idx ON city.orthophoto (kind, captured_on DESC);
SELECT city.watch_changes('city.orthophoto'::regclass);
"""

DOWNGRADE = """
DROP TRIGGER cityops_changes_insert ON city.orthophoto;
DROP TRIGGER cityops_changes_update ON city.orthophoto;
DROP TRIGGER cityops_changes_delete ON city.orthophoto;
DROP INDEX city.orthophoto_kind_captured_idx;
ALTER TABLE city.orthophoto DROP CONSTRAINT orthophoto_display_complete,
    DROP COLUMN display_path, DROP COLUMN display_bytes, DROP COLUMN display_minzoom, DROP COLUMN display_maxzoom;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
