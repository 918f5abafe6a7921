"""Seed the GB/T 30428.2 component classes and the event classes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from gis.standards import COMPONENT_CLASSES, EVENT_CLASSES, EXTENSION_CLASSES, MAJOR_CLASSES

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().execute(
        sa.text(
            "INSERT INTO city.component_class (code, major_name, name, name_en, geom_type, is_extension) "
            "VALUES (:code, :major_name, :name, :name_en, :geom_type, :is_extension)"
        ),
        [
            {
                "code": code,
                "major_name": MAJOR_CLASSES[code[:2]],
                "name": name,
                "name_en": name_en,
                "geom_type": geom_type,
                "is_extension": code in EXTENSION_CLASSES,
            }
            for code, name, name_en, geom_type in COMPONENT_CLASSES
        ],
    )
    op.get_bind().execute(
        sa.text(
            "INSERT INTO city.event_class (code, major_name, name, time_limit_hours) "
            "VALUES (:code, :major_name, :name, :hours)"
        ),
        [
            {"code": code, "major_name": major, "name": name, "hours": hours}
            for code, major, name, hours in EVENT_CLASSES
        ],
    )


def downgrade() -> None:
    op.execute("DELETE FROM city.event_class; DELETE FROM city.component_class;")
