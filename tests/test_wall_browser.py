"""The command wall in a real browser (headless Debian Chromium via playwright-core, software WebGL):
every layer drawn, layer toggles, a plain-SQL alarm shown in the figures and on the map within 2 s, a case past its deadline blinking,
search and the feature inspector, the review desk, and a 4K load. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gis.db import open_connection
from layers.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SCRIPT = ROOT / "tests" / "browser" / "wall.mjs"
LIVE_LIMIT_MS = 2000
# The main town's centre: every layer has features within a few hundred metres of it.
TOWN_CENTRE = (118.27, 33.96)

COVER_SQL = """
SELECT v.objcode, ST_X(v.geom) AS lon, ST_Y(v.geom) AS lat, v.bgcode, c.name AS community
FROM city.manhole_cover_v v JOIN city.unit_grid g ON g.bgcode = v.bgcode JOIN city.community c ON c.code = g.community_code
WHERE v.objcode NOT IN (SELECT objcode FROM city.alarm WHERE status <> 'cleared')
ORDER BY v.geom <-> ST_SetSRID(ST_MakePoint(%s, %s), 4490) LIMIT 1
"""
# What the inspector and the planner must say about the cover's place, read straight from the tables.
PLACE_SQL = """
SELECT g.bgcode, g.district_code, d.name AS district, s.name AS street, c.name AS community, u.name AS responsible_unit,
       ST_XMin(g.geom) AS w, ST_YMin(g.geom) AS s, ST_XMax(g.geom) AS e, ST_YMax(g.geom) AS n
FROM city.unit_grid g JOIN city.community c ON c.code = g.community_code JOIN city.street s ON s.code = c.street_code
JOIN city.district d ON d.code = g.district_code LEFT JOIN city.responsible_unit u ON u.id = g.responsible_unit_id
WHERE g.bgcode = %s
"""


def _read_json_line(stream) -> dict:
    for line in stream:
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError("the browser script ended without a report")


@pytest.fixture(scope="module")
def wall_report(live_server: str, city_db: str, keys: dict[str, str], pending_candidates: dict) -> dict:
    """One browser run over the shared city, with the drone review queue of tests/fixtures_drone.py."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open_connection(city_db) as conn:
        cover = conn.execute(COVER_SQL, TOWN_CENTRE).fetchone()
        place = conn.execute(PLACE_SQL, [cover["bgcode"]]).fetchone()
        # the planner is asked by a click on the cover, a pixel or two from it: the default 300 m, give or take 5
        within = conn.execute("SELECT count(*) FILTER (WHERE d <= 295) AS low, count(*) FILTER (WHERE d <= 305) AS high FROM "
                              "(SELECT ST_Distance(geom::geography, ST_SetSRID(ST_Point(%s, %s), 4490)::geography) AS d "
                              "FROM city.manhole_cover_v) x", [cover["lon"], cover["lat"]]).fetchone()
        figures = _figures(conn)
    browser = subprocess.Popen(
        ["node", str(SCRIPT), live_server, json.dumps(cover), keys["reviewer"], str(ARTIFACTS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    alarm_id = late = None
    try:
        ready = _read_json_line(browser.stdout)
        if ready.get("ready_for_alarm"):
            with open_connection(city_db) as conn:  # a plain INSERT, as any program would write it
                alarm_id = conn.execute("INSERT INTO city.alarm (objcode, alarm_type, severity) VALUES (%s, 'opened', 3) "
                                        "RETURNING id", [cover["objcode"]]).fetchone()["id"]
                # and the clock passes a dispatched case's deadline
                late = conn.execute("UPDATE city.case_file SET deadline_at = now() - interval '1 minute' WHERE id = "
                                    "(SELECT id FROM city.case_file WHERE state = 'dispatched' AND deadline_at > now() ORDER BY id LIMIT 1) "
                                    "RETURNING id, case_no, deadline_at + interval '1 minute' AS was").fetchone()
                conn.commit()
            browser.stdin.write(f"inserted {late['case_no'] if late else ''}\n")
            browser.stdin.flush()
            report = _read_json_line(browser.stdout)
        else:
            report = ready
        browser.wait(timeout=120)
    finally:
        browser.kill()
        if alarm_id is not None:
            with open_connection(city_db) as conn:
                conn.execute("DELETE FROM city.alarm WHERE id = %s", [alarm_id])
                if late:
                    conn.execute("UPDATE city.case_file SET deadline_at = %s WHERE id = %s", [late["was"], late["id"]])
                conn.commit()
    (ARTIFACTS / "wall-report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    assert "error" not in report, report["error"]
    return {**report, "truth": {"cover": cover, "place": place, "within_300m": within, "figures": figures}}


def _figures(conn) -> dict:
    """The wall's figures computed here, from their definitions in the README, not by gis/figures.py."""
    day_start = datetime.now(ZoneInfo("Asia/Shanghai")).replace(hour=0, minute=0, second=0, microsecond=0)
    stalls = conn.execute("SELECT count(*) FILTER (WHERE occupied > 0) AS occupied, count(*) AS total FROM city.stall_site").fetchone()
    today = conn.execute("SELECT count(*) FILTER (WHERE reported_at >= %(d)s) AS reported, count(*) FILTER (WHERE filed_at >= %(d)s) AS filed, "
                         "count(*) FILTER (WHERE closed_at >= %(d)s) AS closed FROM city.case_file", {"d": day_start}).fetchone()
    month = conn.execute("SELECT count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed, count(*) AS filed FROM city.case_file "
                         "WHERE filed_at >= now() - interval '30 days' AND state <> 'voided'").fetchone()
    return {"stall_percent": round(100 * stalls["occupied"] / stalls["total"], 1), **stalls, **today,
            "closure_rate": round(100 * month["closed"] / month["filed"], 1)}


def _digits(text: str) -> int:
    return int(re.sub(r"\D", "", text))


@pytest.mark.slow
def test_wall_loads_without_errors(wall_report):
    assert wall_report["wallErrors"] == []
    assert wall_report["consoleErrors"] == []
    assert wall_report["firstIdleMs"] < 60_000


@pytest.mark.slow
def test_every_catalogue_layer_is_drawn(wall_report):
    assert wall_report["layersMissing"] == []
    assert set(wall_report["layers"]) == {layer.id for layer in CATALOGUE}


@pytest.mark.slow
def test_orthophotos_of_the_drone_queue_are_raster_layers(wall_report, pending_candidates):
    # the pair's RGB and DSM flights and the change map, at least (GET /orthophotos is a FeatureCollection)
    assert wall_report["orthophotoLayers"] >= 5


@pytest.mark.slow
def test_layer_toggle_hides_and_shows(wall_report):
    toggled = wall_report["toggles"]["stall_sites"]
    assert toggled["off"] == 0 and toggled["on"] > 0


@pytest.mark.slow
def test_inserted_alarm_reaches_figures_and_map_within_two_seconds(wall_report):
    live = wall_report["liveAlarm"]
    assert live["figureMs"] <= LIVE_LIMIT_MS
    assert live["figureAndMapMs"] <= LIVE_LIMIT_MS


@pytest.mark.slow
def test_a_case_past_its_deadline_blinks_on_the_wall_and_is_counted(wall_report):
    late = wall_report["overdueCase"]
    assert late["caseNo"] and late["ms"] <= 5000


@pytest.mark.slow
def test_search_and_inspector_show_codes_and_responsible_unit(wall_report):
    cover, place = wall_report["truth"]["cover"], wall_report["truth"]["place"]
    assert len(wall_report["search"]) == 1 and cover["objcode"] in wall_report["search"][0]
    inspector = wall_report["inspector"]
    # the cover's own code read part by part, and its grid's place as the tables hold it
    assert cover["objcode"] in inspector and place["bgcode"] in inspector
    for value in (place["community"], place["street"], place["district"], place["responsible_unit"]):
        assert value and value in inspector, (value, inspector)


@pytest.mark.slow
def test_search_by_grid_code_and_by_name(wall_report):
    place = wall_report["truth"]["place"]
    by_grid = wall_report["searchGrid"]
    assert len(by_grid["hits"]) == 1 and place["bgcode"] in by_grid["hits"][0]
    lon, lat = by_grid["center"]  # the map flew to the grid
    assert place["w"] <= lon <= place["e"] and place["s"] <= lat <= place["n"], (by_grid["center"], place)
    by_name = wall_report["searchName"]["hits"]
    assert any(place["community"] in hit and place["street"] in hit for hit in by_name), by_name


@pytest.mark.slow
def test_planner_answers_on_the_map(wall_report):
    planner, place = wall_report["planner"], wall_report["truth"]["place"]
    assert place["bgcode"] in planner["locate"] and place["responsible_unit"] in planner["locate"], planner["locate"]
    assert (place["district_code"] in planner["locate"]) or (place["district"] in planner["locate"])
    count = re.match(r"(\d+) 个 .* 在 300 m 内", planner["within"])
    within = wall_report["truth"]["within_300m"]
    assert count and within["low"] <= int(count.group(1)) <= within["high"], (planner["within"], within)


@pytest.mark.slow
def test_wall_figures_match_the_tables(wall_report):
    shown, truth = wall_report["figures"]["shown"], wall_report["truth"]["figures"]
    assert float(shown["stall-percent"].rstrip("%")) == truth["stall_percent"]
    assert _digits(shown["stall-occupied"]) == truth["occupied"]
    assert [_digits(shown[f"cases-{k}"]) for k in ("reported", "filed", "closed")] == [truth[k] for k in ("reported", "filed", "closed")]
    assert float(shown["closure-rate"].rstrip("%")) == truth["closure_rate"]


@pytest.mark.slow
def test_review_desk_confirms_a_candidate_into_an_illegal_building(wall_report, city_db):
    review = wall_report["review"]
    assert "skipped" not in review, review
    assert review["outcome"] == "confirm", review
    assert review["onMapBefore"] > 0 and review["leftMap"], review        # drawn, then gone from change_candidates
    assert review["registeredAfterStatus"] == 200, review                 # after view: the registered after flight
    assert review["queueAfter"] == review["queueBefore"] - 1 and not review["stillQueued"], review
    assert review["figureAfter"] == review["figureBefore"] - 1, review    # 违建线索待审 awaiting review
    with open_connection(city_db) as conn:
        row = conn.execute("SELECT c.status, c.reviewer, b.status AS record, b.found_by, b.confirmed_by, b.note, "
                           "b.district_code FROM city.change_candidate c JOIN city.illegal_building b "
                           "ON b.id = c.illegal_building_id WHERE c.id = %s", [int(review["id"])]).fetchone()
    assert row == {"status": "confirmed", "reviewer": "test reviewer", "record": "confirmed", "found_by": "drone",
                   "confirmed_by": "test reviewer", "note": "confirmed from the browser test", "district_code": "321302"}


@pytest.mark.slow
def test_wall_on_a_4k_screen(wall_report):
    uhd = wall_report["uhd"]
    assert "error" not in uhd, uhd
    assert uhd["wallErrors"] == [] and uhd["consoleErrors"] == []
    hd, big = wall_report["layout"], uhd["layout"]
    assert big["viewport"]["width"] == 2 * hd["viewport"]["width"]
    # the same layout twice as large: type, panels and the map's place between them
    assert big["rootFontPx"] == pytest.approx(2 * hd["rootFontPx"], rel=0.05)
    for part in ("map", "figures", "search"):
        for side in ("left", "top", "width", "height"):
            assert big[part][side] == pytest.approx(2 * hd[part][side], rel=0.05, abs=2), (part, side, hd[part], big[part])
    for layout in (hd, big):  # the whole city framed on start
        west, south, east, north = layout["view"]
        e_west, e_south, e_east, e_north = layout["extent"]
        assert west <= e_west and south <= e_south and east >= e_east and north >= e_north, layout
