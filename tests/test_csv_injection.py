"""CSV answers never carry a live spreadsheet formula (issue 13: `=cmd|…` went out verbatim)."""

from __future__ import annotations

import csv
import io

import pytest

from gis.db import open_connection
from layers.export import spreadsheet_safe
from tests.conftest import bearer

HOSTILE = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_cells_are_neutralised(value):
    assert spreadsheet_safe(value) == "'" + value


@pytest.mark.parametrize("value", ["-5", "+1.5e3", "宿城区", "a=b", "", None, 42, -3.5])
def test_other_cells_are_left_alone(value):
    assert spreadsheet_safe(value) == value


@pytest.fixture
def hostile_stalls(client, keys, city_db):
    admin = bearer(keys["admin"])
    with open_connection(city_db) as conn:
        x, y = conn.execute("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM city.unit_grid "
                            "ORDER BY bgcode LIMIT 1) g").fetchone().values()
    for i, name in enumerate(HOSTILE):
        made = client.post("/collections/stall_sites/items", headers=admin, json={
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [x + i * 1e-6, y]},
            "properties": {"code": f"T13-CSV-{i}", "name": name, "capacity": 3}})
        assert made.status_code == 201, made.text
    yield
    with open_connection(city_db) as conn:
        conn.execute("DELETE FROM city.stall_site WHERE code LIKE 'T13-CSV-%'")
        conn.commit()


def _names(text: str) -> set[str]:
    return {row["name"] for row in csv.DictReader(io.StringIO(text)) if row["code"].startswith("T13-CSV-")}


def test_items_csv_and_export_csv_are_formula_safe(client, hostile_stalls):
    expected = {"'" + value for value in HOSTILE}
    items = client.get("/collections/stall_sites/items", params={"f": "csv", "filter": "code LIKE 'T13-CSV-%'", "limit": 100})
    assert items.status_code == 200 and _names(items.text) == expected
    export = client.get("/exports/stall_sites.csv")
    assert export.status_code == 200 and _names(export.text) == expected
