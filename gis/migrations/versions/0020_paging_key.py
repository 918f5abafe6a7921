"""A secret that signs the cursors of OGC API Features `next` links.

Every server process (several workers, several machines behind nginx, reads from a streaming
replica) must accept a cursor another one issued, so the key lives in the database they all
read, made once by PostgreSQL's strong random source (`gen_random_uuid`, two of them: 244 random
bits). It never leaves the server: a client can neither read it nor forge a cursor.

Revision ID: 0020
Revises: 0017
Create Date: 2026-11-30
"""

from alembic import op

revision = "0020"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE city.paging_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret bytea NOT NULL CHECK (length(secret) = 32)
);
INSERT INTO city.paging_key (secret)
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
"""

DOWNGRADE = "DROP TABLE city.paging_key;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
