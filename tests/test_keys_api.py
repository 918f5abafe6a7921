"""Keys and roles through the API: reads are open, writes need the right role and district."""

from __future__ import annotations

import asyncio

import anyio
import psycopg
import pytest
from psycopg.rows import dict_row

from gis.db import open_connection
from gis.errors import Unauthorized
from gis.keys import Principal, authenticate, create_key, list_keys, parse_bearer, revoke_key
from tests.conftest import bearer


@pytest.fixture(scope="module")
def stall_sites(city_db):
    with open_connection(city_db) as conn:
        sucheng = conn.execute("SELECT code, capacity, occupied FROM city.stall_site WHERE district_code = '321302' ORDER BY id LIMIT 1").fetchone()
        suyu = conn.execute("SELECT code, capacity, occupied FROM city.stall_site WHERE district_code = '321311' ORDER BY id LIMIT 1").fetchone()
    yield sucheng, suyu
    with open_connection(city_db) as conn:
        for site in (sucheng, suyu):
            conn.execute("UPDATE city.stall_site SET occupied = %s WHERE code = %s", [site["occupied"], site["code"]])
        conn.commit()


def test_health_landing_and_conformance_need_no_key(client):
    assert client.get("/healthz").json()["database"] == "ok"
    landing = client.get("/").json()
    assert {link["rel"] for link in landing["links"]} >= {"self", "service-desc", "conformance"}
    assert "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core" in client.get("/conformance").json()["conformsTo"]


def test_write_without_key_is_401(client, stall_sites):
    response = client.put(f"/stall-sites/{stall_sites[0]['code']}/occupancy", json={"occupied": 1})
    assert response.status_code == 401
    assert "access key" in response.json()["description"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_unknown_key_is_401(client, stall_sites):
    response = client.put(f"/stall-sites/{stall_sites[0]['code']}/occupancy", json={"occupied": 1}, headers=bearer("cok_not-a-real-key"))
    assert response.status_code == 401 and "unknown or revoked" in response.json()["description"]


def test_viewer_may_not_write(client, keys, stall_sites):
    response = client.put(f"/stall-sites/{stall_sites[0]['code']}/occupancy", json={"occupied": 1}, headers=bearer(keys["viewer"]))
    assert response.status_code == 403 and "editor role" in response.json()["description"]


def _occupied(city_db, code: str) -> int:
    """Read back from the database on a connection of its own, not from the response's echo."""
    with open_connection(city_db) as conn:
        return conn.execute("SELECT occupied FROM city.stall_site WHERE code = %s", [code]).fetchone()["occupied"]


def test_district_scoped_editor_inside_and_outside_its_district(client, keys, stall_sites, city_db):
    sucheng, suyu = stall_sites
    wanted = 1 if sucheng["occupied"] != 1 else 2  # a value the row does not hold yet
    inside = client.put(f"/stall-sites/{sucheng['code']}/occupancy", json={"occupied": wanted}, headers=bearer(keys["editor_sucheng"]))
    assert inside.status_code == 200 and inside.json()["occupied"] == wanted
    assert _occupied(city_db, sucheng["code"]) == wanted
    refused = 1 if suyu["occupied"] != 1 else 2
    outside = client.put(f"/stall-sites/{suyu['code']}/occupancy", json={"occupied": refused}, headers=bearer(keys["editor_sucheng"]))
    assert outside.status_code == 403
    assert "321302" in outside.json()["description"] and "321311" in outside.json()["description"]
    assert _occupied(city_db, suyu["code"]) == suyu["occupied"]


def test_occupancy_over_capacity_is_400_and_not_written(client, keys, stall_sites, city_db):
    site = stall_sites[0]
    held = _occupied(city_db, site["code"])
    response = client.put(f"/stall-sites/{site['code']}/occupancy", json={"occupied": site["capacity"] + 1}, headers=bearer(keys["editor"]))
    assert response.status_code == 400 and "capacity" in response.json()["description"]
    assert _occupied(city_db, site["code"]) == held
    assert client.put("/stall-sites/NOPE/occupancy", json={"occupied": 1}, headers=bearer(keys["editor"])).status_code == 404
    assert client.put(f"/stall-sites/{site['code']}/occupancy", json={"occupied": "many"}, headers=bearer(keys["editor"])).status_code == 400


def test_alarm_write_and_district_scope(client, keys, city_db):
    with open_connection(city_db) as conn:
        suyu_cover = conn.execute("SELECT objcode FROM city.manhole_cover_v WHERE district_code = '321311' LIMIT 1").fetchone()["objcode"]

    def alarms_on_cover() -> list[dict]:
        with open_connection(city_db) as conn:
            return conn.execute("SELECT id, objcode, alarm_type, status FROM city.alarm WHERE objcode = %s ORDER BY id",
                                [suyu_cover]).fetchall()

    before = alarms_on_cover()
    denied = client.post("/alarms", json={"objcode": suyu_cover, "alarm_type": "opened"}, headers=bearer(keys["editor_sucheng"]))
    assert denied.status_code == 403
    assert alarms_on_cover() == before
    created = client.post("/alarms", json={"objcode": suyu_cover, "alarm_type": "opened"}, headers=bearer(keys["editor"]))
    assert created.status_code == 201 and created.json()["status"] == "open"
    try:
        stored = [row for row in alarms_on_cover() if row["id"] == created.json()["id"]]
        assert stored == [{"id": created.json()["id"], "objcode": suyu_cover, "alarm_type": "opened", "status": "open"}]
        bad = client.post("/alarms", json={"objcode": suyu_cover, "alarm_type": "fire"}, headers=bearer(keys["editor"]))
        assert bad.status_code == 400
        assert len(alarms_on_cover()) == len(before) + 1
    finally:
        with open_connection(city_db) as conn:
            conn.execute("DELETE FROM city.alarm WHERE id = %s", [created.json()["id"]])
            conn.commit()


def test_keys_store_only_a_hash_and_can_be_revoked(city_db, client):
    with open_connection(city_db) as conn:
        key, key_id = create_key(conn, "editor", [], "revocable")
        conn.commit()
        stored = conn.execute("SELECT key_hash FROM city.api_key WHERE id = %s", [key_id]).fetchone()["key_hash"]
        assert key.encode() not in bytes(stored)
        assert any(row["id"] == key_id for row in list_keys(conn))
        revoke_key(conn, key_id)
        conn.commit()
    response = client.put("/stall-sites/X/occupancy", json={"occupied": 1}, headers=bearer(key))
    assert response.status_code == 401


def test_unknown_route_is_json_with_a_reason(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"code": "NotFound", "description": "Not Found"}


def test_a_key_is_mapped_the_same_on_every_connection_and_refused_once_revoked(city_db):
    """`gis.keys.authenticate` is the one lookup: routes on the async pool, the drone routes on the
    synchronous one, the check before a body is read and the CLI all get the same principal."""
    with open_connection(city_db) as conn:
        key, key_id = create_key(conn, "editor", ["321311", "321302"], "both pools")
        conn.commit()
    digest = parse_bearer(f"Bearer {key}")

    async def on_async_connection() -> Principal:
        async with await psycopg.AsyncConnection.connect(city_db, row_factory=dict_row) as conn:
            return await authenticate(conn, digest)

    with open_connection(city_db) as conn:
        from_sync = anyio.run(authenticate, conn, digest)
        assert from_sync == asyncio.run(on_async_connection())
        assert (from_sync.key_id, from_sync.role, from_sync.districts) == (key_id, "editor", ("321302", "321311"))
        revoke_key(conn, key_id)
        conn.commit()
        with pytest.raises(Unauthorized, match="unknown or revoked"):
            anyio.run(authenticate, conn, digest)
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        asyncio.run(on_async_connection())


def test_a_key_remembered_before_the_body_is_still_checked_by_its_route(city_db, client, stall_sites):
    """The check before the body remembers a valid key for CITYOPS_KEY_CACHE_S; the route checks it
    again in its own transaction, so a key revoked or demoted meanwhile writes nothing."""
    code = stall_sites[0]["code"]
    with open_connection(city_db) as conn:
        key, key_id = create_key(conn, "editor", [], "revoked while remembered")
        conn.commit()
    first = client.put(f"/stall-sites/{code}/occupancy", json={"occupied": stall_sites[0]["occupied"]}, headers=bearer(key))
    assert first.status_code == 200, first.text
    assert client.app.state.valid_keys.get(parse_bearer(f"Bearer {key}")) is not None  # the gate will not ask again
    with open_connection(city_db) as conn:
        conn.execute("UPDATE city.api_key SET role = 'viewer' WHERE id = %s", [key_id])
        conn.commit()
    demoted = client.put(f"/stall-sites/{code}/occupancy", json={"occupied": 1}, headers=bearer(key))
    assert demoted.status_code == 403 and "viewer role" in demoted.json()["description"]
    with open_connection(city_db) as conn:
        revoke_key(conn, key_id)
        conn.commit()
    revoked = client.put(f"/stall-sites/{code}/occupancy", json={"occupied": 1}, headers=bearer(key))
    assert revoked.status_code == 401 and "unknown or revoked" in revoked.json()["description"]
