"""Primary down: a primary and a streaming replica of their own (in a temporary folder, never the
shared test cluster) behind two real uvicorn servers and nginx (the shipped configuration). With
the primary stopped, tiles and Features pages go on from the replica, straight and through nginx;
writes answer 503 at once with Retry-After and the reason; once the primary is back writes work
again with no restart of any server."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import pytest

from bench.servers import free_port, running
from gis import migrate, provision
from gis.cluster import Cluster, cluster_for
from gis.db import open_connection
from gis.keys import create_key
from gis.settings import Settings
from layers.demo.load import load_demo
from tests.test_nginx import _nginx_command

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WRITE_ANSWER_S = 3.0   # "quickly": well under the pool's own timeout plus a request's
DOWN_FOR_S = 6.0


@pytest.fixture(scope="module")
def pair(settings: Settings) -> Iterator[dict]:
    """A primary of its own holding the demo city, and its streaming replica."""
    base = Path(tempfile.mkdtemp(prefix="cityops-primary-down-"))
    base.chmod(0o755)  # the server user must reach its folders
    own = settings.model_copy(update={"state_dir": base, "database_url": None, "read_database_url": None})
    primary = cluster_for(own)
    try:
        provision.start_server(own)
        info = provision.create_database(own, "cityops")
        migrate.upgrade(info)
        with open_connection(info) as conn:
            load_demo(conn, scale=1)
            key, _ = create_key(conn, "editor", [], "primary-down test")
            site = conn.execute("SELECT code, ST_X(geom) AS lon, ST_Y(geom) AS lat, capacity FROM city.stall_site "
                                "WHERE capacity >= 3 ORDER BY code OFFSET 25 LIMIT 1").fetchone()
            conn.commit()
        replica = primary.add_replica("r1")
        yield {"primary": primary, "replica": replica, "info": info, "replica_info": replica.conninfo("cityops"),
               "key": key, "site": site}
    finally:
        for cluster in (primary.replica("r1"), primary):
            try:
                cluster.stop()
            except Exception:  # noqa: BLE001 - a cluster that failed half-way is removed all the same
                pass
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def servers(pair: dict, settings: Settings) -> Iterator[list[str]]:
    env = {"CITYOPS_DATABASE_URL": pair["info"], "CITYOPS_READ_DATABASE_URL": pair["replica_info"],
           "CITYOPS_STATE_DIR": str(settings.state_dir)}

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("primary_down_a", command(port_a := free_port()), env, port_a, log_dir=ARTIFACTS, timeout_s=90) as a:
        with running("primary_down_b", command(port_b := free_port()), env, port_b, log_dir=ARTIFACTS, timeout_s=90) as b:
            yield [a, b]


@pytest.fixture(scope="module")
def nginx(servers: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix, port = tmp_path_factory.mktemp("nginx_primary_down"), free_port()
    with running("nginx_primary_down", _nginx_command(servers, prefix, port), {}, port, log_dir=ARTIFACTS, timeout_s=30) as base:
        yield base


def _write(base: str, pair: dict, occupied: int) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.put(f"{base}/stall-sites/{pair['site']['code']}/occupancy", json={"occupied": occupied},
                         headers={"Authorization": f"Bearer {pair['key']}"}, timeout=30)
    return response, time.monotonic() - started


def _occupied_in_tile(base: str, pair: dict, z: int = 17) -> int | None:
    tile = morecantile.tms.get("WebMercatorQuad").tile(pair["site"]["lon"], pair["site"]["lat"], z)
    response = httpx.get(f"{base}/collections/stall_sites/tiles/WebMercatorQuad/{z}/{tile.y}/{tile.x}", timeout=30)
    assert response.status_code == 200, (z, response.status_code, response.text[:300])
    layers = mapbox_vector_tile.decode(response.content)
    found = [f["properties"] for layer in layers.values() for f in layer["features"] if f["properties"].get("code") == pair["site"]["code"]]
    return found[0]["occupied"] if found else None


def _items(base: str, pair: dict) -> httpx.Response:
    lon, lat = pair["site"]["lon"], pair["site"]["lat"]
    return httpx.get(f"{base}/collections/stall_sites/items", timeout=30,
                     params={"bbox": f"{lon - 1e-4},{lat - 1e-4},{lon + 1e-4},{lat + 1e-4}", "limit": 5})


def _replica_replayed(pair: dict, occupied: int) -> None:
    deadline = time.monotonic() + 30
    with open_connection(pair["replica_info"], autocommit=True) as conn:
        while conn.execute("SELECT occupied FROM city.stall_site WHERE code = %s", [pair["site"]["code"]]).fetchone()["occupied"] != occupied:
            assert time.monotonic() < deadline, "the replica never replayed the write"
            time.sleep(0.1)


def test_primary_down_reads_go_on_writes_answer_503_and_come_back(pair: dict, servers: list[str], nginx: str):
    primary: Cluster = pair["primary"]
    server = servers[0]
    written, took = _write(server, pair, 1)
    assert written.status_code == 200, written.text
    _replica_replayed(pair, 1)
    assert _occupied_in_tile(server, pair, 17) == 1

    primary.stop()
    try:
        assert not primary.is_running()
        refusals = []
        deadline = time.monotonic() + DOWN_FOR_S
        zooms = iter(range(12, 17))  # tiles never built before: read from the replica, not a cache
        while time.monotonic() < deadline:
            response, took = _write(server, pair, 2)
            refusals.append((response.status_code, took))
            assert response.status_code == 503, response.text
            assert took < WRITE_ANSWER_S, f"a write waited {took:.1f} s for a primary that is down"
            assert response.headers.get("Retry-After", "").isdigit()
            reason = response.json()
            assert reason["code"] in ("PrimaryUnavailable", "DatabaseUnavailable"), reason
            _occupied_in_tile(server, pair, next(zooms, 17))
            assert _occupied_in_tile(server, pair) == 1
            page = _items(server, pair)
            assert page.status_code == 200 and pair["site"]["code"] in page.text, page.text[:300]
            # through nginx, in front of both servers: the same answers (a 503 must not take a server out of nginx's rotation)
            through, _took = _write(nginx, pair, 2)
            assert through.status_code == 503 and through.headers.get("Retry-After", "").isdigit(), through.text
            assert _occupied_in_tile(nginx, pair) == 1
            assert _items(nginx, pair).status_code == 200
        assert len(refusals) >= 2
        assert reason["code"] == "PrimaryUnavailable" and "primary database does not answer" in reason["description"], reason
        print("writes while the primary was down (status, seconds):", refusals)
    finally:
        primary.start()

    # back: the same server takes writes again (its pool's dead connections are replaced)
    deadline = time.monotonic() + 20
    while True:
        response, _took = _write(server, pair, 3)
        if response.status_code == 200:
            break
        assert response.status_code == 503 and time.monotonic() < deadline, response.text
        time.sleep(0.3)
    assert response.json()["occupied"] == 3
    _replica_replayed(pair, 3)
    deadline = time.monotonic() + 5
    while _occupied_in_tile(server, pair, 17) != 3:
        assert time.monotonic() < deadline, "the tile kept the value from before the primary went down"
        time.sleep(0.2)
