"""Views that the layer catalogue publishes where a layer joins a component to its extension table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COMPONENT_COLUMNS = """
    c.objcode, c.objname, c.class_code, c.district_code, c.bgcode, c.objstate, c.in_use,
    c.competent_dept_name, c.owner_dept_name, c.maintainer_dept_name, c.ordate, c.chdate,
    c.datasource, c.note, c.geom, c.geom_3857"""

MANHOLE_CLASSES = "'0101','0102','0103','0104','0105','0106','0107','0108','0109','0110','0111','0112','0114'"


def upgrade() -> None:
    op.execute(f"""
CREATE VIEW city.manhole_cover_v AS
SELECT {COMPONENT_COLUMNS},
    s.device_id, coalesce(s.state, 'unmonitored') AS sensor_state, s.battery_pct,
    s.tilt_deg, s.water_level_cm, s.methane_ppm, s.last_report_at
FROM city.component c LEFT JOIN city.manhole_sensor s USING (objcode)
WHERE c.class_code IN ({MANHOLE_CLASSES});

CREATE VIEW city.streetlight_v AS
SELECT {COMPONENT_COLUMNS},
    l.control_group, l.schedule_on, l.schedule_off, l.lamp_power_w, l.lamp_state
FROM city.component c JOIN city.streetlight l USING (objcode)
WHERE c.class_code = '0118';
""")


def downgrade() -> None:
    op.execute("DROP VIEW city.streetlight_v; DROP VIEW city.manhole_cover_v;")
