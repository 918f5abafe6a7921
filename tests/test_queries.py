"""Planners' queries, each cross-checked with geopandas/shapely computing the same answer in memory."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from gis.db import open_connection


def frame(conn, query: str) -> gpd.GeoDataFrame:
    rows = conn.execute(query).fetchall()
    attributes = {k: [r[k] for r in rows] for k in rows[0] if k != "wkb"}
    return gpd.GeoDataFrame(attributes, geometry=shapely.from_wkb([bytes(r["wkb"]) for r in rows]), crs=4490)


@pytest.fixture(scope="module")
def frames(city_db):
    with open_connection(city_db) as conn:
        return {
            "grids": frame(conn, "SELECT bgcode, ST_AsBinary(geom) AS wkb FROM city.unit_grid"),
            "toilets": frame(conn, "SELECT objcode, ST_AsBinary(geom) AS wkb FROM city.component WHERE class_code = '0301'"),
            "stalls": frame(conn, "SELECT id, capacity, ST_AsBinary(geom) AS wkb FROM city.stall_site"),
            "communities": frame(conn, "SELECT code, ST_AsBinary(geom) AS wkb FROM city.community"),
        }


def test_batch_locate_matches_a_geopandas_sjoin(client, frames):
    xmin, ymin, xmax, ymax = frames["grids"].total_bounds
    rng = np.random.default_rng(6)
    lons, lats = rng.uniform(xmin, xmax, 20_000), rng.uniform(ymin, ymax, 20_000)
    body = "lon,lat\n" + "\n".join(f"{x!r},{y!r}" for x, y in zip(lons.tolist(), lats.tolist()))
    response = client.post("/queries/locate", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    ours = [row["bgcode"] for row in response.json()["results"]]
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lons, lats), crs=4490)
    joined = gpd.sjoin(points, frames["grids"], how="left", predicate="intersects").sort_values("bgcode")
    expected = joined[~joined.index.duplicated()].sort_index()["bgcode"].tolist()
    assert ours == [None if isinstance(code, float) else code for code in expected]
    hit = next(row for row in response.json()["results"] if row["bgcode"])
    assert hit["community_code"] == hit["bgcode"][:12] and hit["district_code"] == hit["bgcode"][:6]
    as_json = client.post("/queries/locate", json={"points": [[float(lons[0]), float(lats[0])]]}).json()["results"][0]
    assert as_json["bgcode"] == ours[0]


def test_nearest_and_within_give_true_metres(client, frames):
    here = (118.28, 33.96)
    found = client.get("/queries/nearest/city_furniture", params={"lon": here[0], "lat": here[1], "n": 5,
                                                                   "filter": "class_code = '0301'"}).json()["features"]
    metric = frames["toilets"].to_crs(4548)
    origin = gpd.GeoSeries([shapely.Point(here)], crs=4490).to_crs(4548).iloc[0]
    distances = metric.distance(origin).sort_values()
    assert [f["id"] for f in found] == metric.loc[distances.index[:5], "objcode"].tolist()
    assert [f["distance_m"] for f in found] == pytest.approx(distances.iloc[:5].tolist(), rel=1e-3)
    radius = distances.iloc[3] + 1
    within = client.get("/queries/within/city_furniture", params={"lon": here[0], "lat": here[1], "distance_m": radius,
                                                                  "filter": "class_code = '0301'"}).json()
    assert within["count"] == 4
    square = shapely.box(118.25, 33.93, 118.31, 33.99)
    inside = client.post("/queries/within/stall_sites", json={"geometry": shapely.geometry.mapping(square)}).json()
    assert sorted(int(f["id"]) for f in inside["features"]) == sorted(frames["stalls"][frames["stalls"].intersects(square)]["id"])


def test_density_per_community_matches_geopandas(client, frames):
    result = client.get("/queries/density/stall_sites", params={"zone": "community", "filter": "capacity > 20"}).json()
    stalls = frames["stalls"]
    joined = gpd.sjoin(frames["communities"], stalls[stalls["capacity"] > 20], predicate="intersects")
    expected = joined.groupby("code").size()
    counts = {f["id"]: f["properties"]["count"] for f in result["features"]}
    assert {k: v for k, v in counts.items() if v} == expected.to_dict()
    assert result["class_breaks"]["per_km2"] == sorted(result["class_breaks"]["per_km2"])
    table = client.get("/queries/density/stall_sites", params={"zone": "district", "f": "csv"}).text.splitlines()
    assert table[0] == "code,name,area_m2,count,per_km2" and len(table) == 6


def test_coverage_gaps_match_shapely(client, frames, city_db):
    box = (118.25, 33.93, 118.29, 33.97)
    result = client.get("/queries/coverage-gaps/city_furniture", params={
        "distance_m": 500, "bbox": ",".join(map(str, box)), "filter": "class_code = '0301'"}).json()
    grids = frames["grids"][frames["grids"].intersects(shapely.box(*box))].to_crs(4548)
    cover = frames["toilets"].to_crs(4548).buffer(500, quad_segs=8).union_all()
    expected = dict(zip(grids["bgcode"], grids.difference(cover).area))
    ours = {f["id"]: f["properties"]["uncovered_m2"] for f in result["features"]}
    assert ours.keys() == expected.keys() and ours
    assert list(ours.values()) == pytest.approx([expected[k] for k in ours], abs=5.0)
    assert result["uncovered_pct"] == pytest.approx(100 * sum(expected.values()) / grids.area.sum(), abs=0.1)


@pytest.mark.parametrize("url, reason", [
    ("/queries/nearest/nosuch?lon=118&lat=33", "unknown layer"),
    ("/queries/nearest/stall_sites?lon=200&lat=33", "lon"),
    ("/queries/within/stall_sites?lon=118&lat=33&distance_m=-1", "distance_m"),
    ("/queries/density/stall_sites?filter=nosuch=1", "unknown property"),
    ("/queries/coverage-gaps/streetlights?distance_m=30", "need an area"),
])
def test_bad_query_input_is_a_4xx(client, url, reason):
    response = client.get(url)
    assert 400 <= response.status_code < 500 and reason in response.json()["description"], response.text


def test_batch_is_capped(client):
    response = client.post("/queries/locate", json={"points": [[118.3, 33.9]] * 100_001})
    assert response.status_code == 400 and "100000" in response.json()["description"].replace(",", "")


def test_grid_index_follows_changes_to_the_grids(client, city_db):
    """The in-memory locator is dropped when a grid changes, by whatever program."""
    import time

    from gis.db import open_connection

    with open_connection(city_db) as conn:
        grid = conn.execute("SELECT bgcode, ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat, "
                            "responsible_unit_id FROM city.unit_grid ORDER BY bgcode LIMIT 1").fetchone()
        other_unit = conn.execute("SELECT id, name FROM city.responsible_unit WHERE id <> %s ORDER BY id LIMIT 1",
                                  [grid["responsible_unit_id"]]).fetchone()
    url = f"/queries/locate?lon={grid['lon']}&lat={grid['lat']}"
    before = client.get(url).json()
    assert before["bgcode"] == grid["bgcode"]
    with open_connection(city_db) as conn:
        conn.execute("UPDATE city.unit_grid SET responsible_unit_id = %s WHERE bgcode = %s", [other_unit["id"], grid["bgcode"]])
        conn.commit()
    try:
        deadline = time.monotonic() + 5
        while client.get(url).json()["responsible_unit_name"] != other_unit["name"]:
            assert time.monotonic() < deadline, "the locator still answers with the old responsible unit"
            time.sleep(0.1)
    finally:
        with open_connection(city_db) as conn:
            conn.execute("UPDATE city.unit_grid SET responsible_unit_id = %s WHERE bgcode = %s",
                         [grid["responsible_unit_id"], grid["bgcode"]])
            conn.commit()
