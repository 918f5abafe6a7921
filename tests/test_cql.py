"""CQL2 text and JSON compile to parameterised SQL that PostGIS runs, with clear errors."""

from __future__ import annotations

import pytest
from psycopg import sql

from gis.cql import compile_filter
from gis.db import open_connection
from gis.errors import InvalidInput
from layers.live import LiveCatalogue
from layers.queryables import COLUMNS_SQL, queryables_of

get_layer = LiveCatalogue().get  # the static declarations


@pytest.fixture(scope="module")
def conn(city_db):
    with open_connection(city_db) as connection:
        yield connection


def queryables(conn, layer_id):
    layer = get_layer(layer_id)
    return layer, queryables_of(layer, conn.execute(COLUMNS_SQL, [layer.relation]).fetchall())


def count(conn, layer_id, expression, **kwargs):
    layer, q = queryables(conn, layer_id)
    compiled = compile_filter(expression, q, **kwargs)
    where = sql.SQL(layer.where) if layer.where else sql.SQL("TRUE")
    query = sql.SQL("SELECT count(*) AS n FROM {} WHERE {} AND {}").format(
        sql.Identifier(*layer.relation.split(".")), where, compiled.clause)
    return conn.execute(query, compiled.params).fetchone()["n"]


def test_text_and_json_give_the_same_answer(conn):
    text = count(conn, "manhole_covers", "sensor_state = 'alarm'")
    json_form = count(conn, "manhole_covers", {"op": "=", "args": [{"property": "sensor_state"}, "alarm"]})
    direct = conn.execute("SELECT count(*) AS n FROM city.manhole_sensor WHERE state = 'alarm'").fetchone()["n"]
    assert text == json_form == direct > 0


def test_spatial_and_temporal_operators(conn):
    inside = count(conn, "stall_sites", "S_INTERSECTS(geometry, BBOX(118.2, 33.9, 118.36, 34.02))")
    assert 0 < inside < 950
    assert count(conn, "stall_sites", "S_WITHIN(geometry, POLYGON((118.2 33.9, 118.36 33.9, 118.36 34.02, 118.2 34.02, 118.2 33.9)))") == inside
    recent = count(conn, "alarms", "T_AFTER(raised_at, TIMESTAMP('2000-01-01T00:00:00Z'))")
    assert recent == count(conn, "alarms", "raised_at > TIMESTAMP('2000-01-01T00:00:00Z')") > 0
    assert count(conn, "alarms", "T_INTERSECTS(raised_at, INTERVAL('2000-01-01T00:00:00Z', '..'))") == recent


def test_in_between_like_and_not(conn):
    both = count(conn, "stall_sites", "district_code IN ('321302', '321311')")
    assert both == count(conn, "stall_sites", "district_code = '321302'") + count(conn, "stall_sites", "district_code = '321311'")
    assert count(conn, "stall_sites", "capacity BETWEEN 8 AND 60") == 950
    assert count(conn, "stall_sites", "NOT (occupied > 0)") == 132
    assert count(conn, "stall_sites", "code LIKE 'SZ321302%'") == count(conn, "stall_sites", "district_code = '321302'")


@pytest.mark.parametrize("bad, reason", [
    ("status = = 'x'", "does not parse"),
    ("nosuch = 1", "unknown property 'nosuch'"),
    ("capacity = 'many'", "numeric property"),
    ("geometry = 3", "geometry"),
])
def test_bad_filters_say_why(conn, bad, reason):
    layer, q = queryables(conn, "stall_sites")
    with pytest.raises(InvalidInput, match=reason):
        compile_filter(bad, q)


def test_user_values_are_bound_not_formatted(conn):
    layer, q = queryables(conn, "stall_sites")
    compiled = compile_filter("name = 'x''; DROP TABLE city.stall_site; --'", q)
    assert "DROP" not in compiled.clause.as_string(conn)
    assert list(compiled.params.values()) == ["x'; DROP TABLE city.stall_site; --"]
