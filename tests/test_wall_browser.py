"""The command wall in a real browser (headless Debian Chromium via playwright-core, software WebGL):
every layer drawn, layer toggles, a plain-SQL alarm shown in the figures and on the map within 2 s, a case past its deadline blinking,
search and the feature inspector, the review desk, and a 4K load. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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
SELECT objcode, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM city.manhole_cover_v
WHERE objcode NOT IN (SELECT objcode FROM city.alarm WHERE status <> 'cleared')
ORDER BY geom <-> ST_SetSRID(ST_MakePoint(%s, %s), 4490) LIMIT 1
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
    return report


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
    assert any("部件" in hit for hit in wall_report["search"])
    assert "GB/T 30428.2" in wall_report["inspector"]
    assert "责任单位" in wall_report["inspector"]


@pytest.mark.slow
def test_planner_answers_on_the_map(wall_report):
    planner = wall_report["planner"]
    assert "责任单位" in planner["locate"] and "321302" in planner["locate"] or "宿城区" in planner["locate"]
    assert "within" in planner["within"]


@pytest.mark.slow
def test_review_desk_confirms_a_candidate_into_an_illegal_building(wall_report, city_db):
    review = wall_report["review"]
    assert "skipped" not in review, review
    assert review["outcome"] == "confirm", review
    assert review["onMapBefore"] > 0 and review["leftMap"], review        # drawn, then gone from change_candidates
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
