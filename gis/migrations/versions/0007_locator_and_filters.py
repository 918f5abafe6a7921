"""Watch responsible units (for the in-memory grid index) and change candidates (a tile layer);
index components by class then code.

The grid index (gis.grid_index) answers with responsible units' names, so it must hear when
they change. Filtering components by class and paging them in code order (the OGC API Features
default order) walks one index range instead of the whole primary key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT city.watch_changes('city.responsible_unit'::regclass)")
    op.execute("SELECT city.watch_changes('city.change_candidate'::regclass)")
    op.execute("CREATE INDEX component_class_objcode_idx ON city.component (class_code, objcode)")
    op.execute("DROP INDEX city.component_class_idx")


def downgrade() -> None:
    op.execute("CREATE INDEX component_class_idx ON city.component (class_code)")
    op.execute("DROP INDEX city.component_class_objcode_idx")
    for table in ("city.responsible_unit", "city.change_candidate"):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER cityops_changes_{event} ON {table}")
