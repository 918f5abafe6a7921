"""nginx (Debian) in front of two cityops servers with the shipped configuration: warm tiles come
from nginx's cache, a write reaches every path within about a second, and an old tile never
comes back after the new one has been served."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import pytest

from api.cli.deploy import render_nginx
from bench.servers import free_port, running
from gis.db import open_connection
from gis.settings import Settings
from tests.conftest import ARTIFACTS

Z = 16


@pytest.fixture(scope="module")
def two_servers(city_db: str, settings: Settings) -> Iterator[list[str]]:
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir)}
    bases = []
    with running("cityops_a", _uvicorn(port_a := free_port()), env, port_a, log_dir=ARTIFACTS, timeout_s=90) as a:
        with running("cityops_b", _uvicorn(port_b := free_port()), env, port_b, log_dir=ARTIFACTS, timeout_s=90) as b:
            bases.extend([a, b])
            yield bases


def _uvicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]


@pytest.fixture(scope="module")
def nginx(two_servers: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is not installed: scripts/install.sh installs it")
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(render_nginx([base.removeprefix("http://") for base in two_servers], listen=f"127.0.0.1:{port}",
                                   cache_dir=str(prefix / "cache"), cache_max_size="256m", user="root",
                                   worker_processes="2", prefix=str(prefix), daemon=False))
    checked = subprocess.run([binary, "-t", "-c", str(config), "-p", str(prefix)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    with running("nginx", [binary, "-c", str(config), "-p", str(prefix)], {}, port, log_dir=ARTIFACTS, timeout_s=30) as base:
        yield base


def _site(city_db: str) -> dict:
    with open_connection(city_db) as conn:
        return conn.execute("SELECT code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM city.stall_site "
                            "ORDER BY code OFFSET 77 LIMIT 1").fetchone()


def _tile_path(site: dict) -> str:
    tile = morecantile.tms.get("WebMercatorQuad").tile(site["lon"], site["lat"], Z)
    return f"/collections/stall_sites/tiles/WebMercatorQuad/{Z}/{tile.y}/{tile.x}"


def _codes(response: httpx.Response) -> set[str]:
    assert response.status_code in (200, 204), response.text
    if response.status_code == 204:
        return set()
    return {f["properties"]["code"] for layer in mapbox_vector_tile.decode(response.content).values()
            for f in layer["features"]}


def test_warm_tiles_come_from_nginx_with_the_servers_etag(nginx: str, two_servers: list[str], city_db: str):
    path = _tile_path(_site(city_db))
    with httpx.Client(base_url=nginx) as client:
        first = client.get(path)
        second = client.get(path)
    direct = httpx.get(two_servers[0] + path)
    assert first.headers["X-Cache-Status"] in ("MISS", "EXPIRED", "REVALIDATED", "HIT")
    assert second.headers["X-Cache-Status"] == "HIT", second.headers
    assert second.headers["ETag"] == direct.headers["ETag"] and second.content == direct.content


def test_a_write_reaches_nginx_and_both_servers_within_a_second_and_never_goes_back(
        nginx: str, two_servers: list[str], city_db: str):
    site = _site(city_db)
    path = _tile_path(site)
    urls = [nginx + path] + [base + path for base in two_servers]
    with httpx.Client() as client:
        for url in urls:  # every path holds the tile with the site
            assert site["code"] in _codes(client.get(url))
        with open_connection(city_db) as conn:
            conn.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, 0.02, 0) WHERE code = %s", [site["code"]])
            conn.commit()
        written = time.monotonic()
        first_new: dict[str, float] = {}
        stale_after_new: list[str] = []
        checks = 0
        try:
            while time.monotonic() - written < 2.5:
                for url in urls:
                    present = site["code"] in _codes(client.get(url))
                    checks += 1
                    if not present:
                        first_new.setdefault(url, time.monotonic() - written)
                    elif url in first_new:
                        stale_after_new.append(url)
                time.sleep(0.02)
        finally:
            with open_connection(city_db) as conn:
                conn.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, -0.02, 0) WHERE code = %s",
                             [site["code"]])
                conn.commit()
    assert set(first_new) == set(urls), f"still stale after 2.5 s: {set(urls) - set(first_new)}"
    assert max(first_new.values()) <= 1.3, first_new  # nginx's 1 s, plus the notification and a poll
    assert not stale_after_new, f"an old tile came back on {stale_after_new[0]} ({checks} checks)"
