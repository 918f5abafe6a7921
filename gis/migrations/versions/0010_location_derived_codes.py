"""Codes that follow from where a feature lies are derived from its geometry by the database.

A building's, illegal-building record's or stall site's district, and a component's or stall
site's unit grid (bgcode, by the importer's rule: the lowest-numbered grid of its county it
touches), were labels a client set and kept when the geometry moved, so a moved
feature kept a wrong grid, district and responsible unit for everyone (issue 13). BEFORE
triggers now recompute them from the geometry (the district and the unit grid holding the
feature's point on surface) whenever the geometry or the label is written, whoever writes. An
INSERT that brings its own codes keeps them (the demo city and imports write millions of rows
whose codes were computed the same way in bulk; the API never passes them on).

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# table -> the trigger functions that derive its codes (run in name order: district, then grid)
DERIVED = {
    "city.building": ("derive_district",),
    "city.illegal_building": ("derive_district",),
    "city.stall_site": ("derive_district", "derive_grid"),
    "city.component": ("derive_grid",),
}
LABELS = {"derive_district": "district_code", "derive_grid": "bgcode"}


def upgrade() -> None:
    op.execute("""
CREATE FUNCTION city.derive_district() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT d.code INTO NEW.district_code FROM city.district d
    WHERE ST_Intersects(d.geom, ST_PointOnSurface(NEW.geom)) ORDER BY d.code LIMIT 1;
    IF NEW.district_code IS NULL THEN
        RAISE EXCEPTION 'the geometry lies outside every district of the city'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'geometry_inside_a_district';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION city.derive_grid() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    county char(6);
BEGIN
    -- The importer's rule: the lowest-numbered grid of the feature's county that it touches (NULL
    -- where it touches none). A component's county is part of its code; a stall site's is derived.
    -- (Nested IFs: NEW.objcode exists only on component, and a condition is prepared whole.)
    IF TG_TABLE_NAME = 'component' THEN
        county := left(NEW.objcode, 6);
    ELSE
        county := NEW.district_code;
    END IF;
    NEW.bgcode := (SELECT g.bgcode FROM city.unit_grid g
                   WHERE g.district_code = county AND ST_Intersects(g.geom, NEW.geom) ORDER BY g.bgcode LIMIT 1);
    -- moving a component into another district would make its code lie about where it is
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'component' AND NEW.bgcode IS NULL THEN
        IF EXISTS (SELECT 1 FROM city.district d WHERE d.code <> county
                   AND ST_Intersects(d.geom, ST_PointOnSurface(NEW.geom))) THEN
            RAISE EXCEPTION 'component % would lie outside district %, the district of its code', NEW.objcode, county
                USING ERRCODE = 'check_violation', CONSTRAINT = 'component_inside_the_district_of_its_code';
        END IF;
    END IF;
    RETURN NEW;
END $$;
""")
    for table, functions in DERIVED.items():
        for function in functions:
            label = LABELS[function]
            op.execute(f"CREATE TRIGGER {function}_on_insert BEFORE INSERT ON {table} FOR EACH ROW "
                       f"WHEN (NEW.{label} IS NULL) EXECUTE FUNCTION city.{function}()")
            op.execute(f"CREATE TRIGGER {function}_on_update BEFORE UPDATE OF geom, {label} ON {table} FOR EACH ROW "
                       f"EXECUTE FUNCTION city.{function}()")


def downgrade() -> None:
    for table, functions in DERIVED.items():
        for function in functions:
            op.execute(f"DROP TRIGGER {function}_on_insert ON {table}")
            op.execute(f"DROP TRIGGER {function}_on_update ON {table}")
    op.execute("DROP FUNCTION city.derive_grid(); DROP FUNCTION city.derive_district()")
