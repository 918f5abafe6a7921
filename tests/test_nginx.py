"""nginx (Debian) in front of two cityops servers with the shipped configuration: warm tiles come
from nginx's cache, a write reaches every path within about a second, an old tile never
comes back after the new one has been served, and neither a restart nor a reload of nginx under
load brings an old tile back or leaves clients without answers."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
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


def _nginx_command(two_servers: list[str], prefix: Path, port: int) -> list[str]:
    """nginx with the shipped configuration in front of the servers, its cache and pid under `prefix`."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is not installed: scripts/install.sh installs it")
    config = prefix / "nginx.conf"
    config.write_text(render_nginx([base.removeprefix("http://") for base in two_servers], listen=f"127.0.0.1:{port}",
                                   cache_dir=str(prefix / "cache"), cache_max_size="256m", user="root",
                                   worker_processes="2", prefix=str(prefix), daemon=False))
    checked = subprocess.run([binary, "-t", "-c", str(config), "-p", str(prefix)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    return [binary, "-c", str(config), "-p", str(prefix)]


@pytest.fixture(scope="module")
def nginx(two_servers: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix, port = tmp_path_factory.mktemp("nginx"), free_port()
    with running("nginx", _nginx_command(two_servers, prefix, port), {}, port, log_dir=ARTIFACTS, timeout_s=30) as base:
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


class TileWatch:
    """Clients asking nginx for one tile in a loop, each answer noted with when it was asked and received:
    'in' (the site is in the tile), 'out' (it is not), or the error."""

    def __init__(self, url: str, code: str, clients: int = 3):
        self.url, self.code = url, code
        self.answers: list[tuple[float, float, str]] = []  # (asked, answered, answer)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, daemon=True) for _ in range(clients)]

    def __enter__(self) -> TileWatch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _ask(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                asked = time.monotonic()
                try:
                    try:
                        response = client.get(self.url)
                    except httpx.RemoteProtocolError:
                        # a keep-alive connection an old worker closed as the reload began: browsers and
                        # tile clients send an idempotent request again on a fresh connection
                        response = client.get(self.url)
                    answer = ("in" if self.code in _codes(response) else "out") if response.status_code in (200, 204) \
                        else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    answer = type(exc).__name__
                self.answers.append((asked, time.monotonic(), answer))
                time.sleep(0.01)

    def asked_after_new(self, moment: float, new: str) -> list[str]:
        """Answers to what was asked after a client, asking from `moment` on, first received `new`.
        (Ordering all answers by when they were asked would not do: with three clients, one asked
        before the write and answered slowly after it sorts before one asked later, still before the
        write, that rightly got the old tile.)"""
        firsts = [answered for asked, answered, answer in list(self.answers) if asked >= moment and answer == new]
        if not firsts:
            return []
        return [answer for asked, _, answer in sorted(self.answers) if asked > min(firsts)]

    def since(self, moment: float) -> list[str]:
        """The answers to what was asked from `moment` on, in the order asked."""
        return [answer for asked, _, answer in sorted(self.answers) if asked >= moment]


def _move_site(city_db: str, code: str, dx: float) -> None:
    with open_connection(city_db) as conn:
        conn.execute("UPDATE city.stall_site SET geom = ST_Translate(geom, %s, 0) WHERE code = %s", [dx, code])
        conn.commit()


def test_nginx_restarted_or_reloaded_under_load_serves_nothing_stale(
        two_servers: list[str], city_db: str, tmp_path_factory: pytest.TempPathFactory):
    site = _site(city_db)
    prefix, port = tmp_path_factory.mktemp("nginx_restart"), free_port()
    command = _nginx_command(two_servers, prefix, port)
    url = f"http://127.0.0.1:{port}{_tile_path(site)}"
    log = open(ARTIFACTS / "nginx_restart.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        with TileWatch(url, site["code"]) as watch:
            time.sleep(1.5)
            assert "in" in watch.since(0), watch.since(0)[-5:]
            # restart: stop nginx, write while it is down, start it again on the same disk cache
            process.send_signal(signal.SIGQUIT)
            process.wait(30)
            _move_site(city_db, site["code"], 0.02)
            time.sleep(1.2)  # past the second the cached copy was kept for
            started = time.monotonic()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(2.0)
            after_restart = watch.since(started)
            answered = [asked for asked, _, answer in list(watch.answers) if asked >= started and answer in ("in", "out")]
            assert answered and answered[0] - started < 1.0, "clients got no answer for a second after nginx started"
            tiles = [a for a in after_restart if a in ("in", "out")]
            assert tiles and set(tiles) == {"out"}, f"nginx served the tile from before the write after its restart: {tiles[:10]}"

            # reload (SIGHUP) right after a write, under the same load: no failed request, nothing old comes back
            reload_from = time.monotonic()
            _move_site(city_db, site["code"], -0.02)
            written = time.monotonic()
            reloaded = subprocess.run([*command, "-s", "reload"], capture_output=True, text=True)
            assert reloaded.returncode == 0, reloaded.stderr
            time.sleep(2.0)
            during_reload = watch.since(reload_from)
            assert set(during_reload) <= {"in", "out"}, f"failed answers during the reload: {set(during_reload)}"
            assert "in" in during_reload and "out" not in watch.asked_after_new(reload_from, "in"), \
                "the tile from before the write came back after a client had the new one"
            late = [answer for asked, _, answer in list(watch.answers) if asked >= written + 1.3]
            assert late and set(late) == {"in"}, "nginx still served the tile from before the write after 1.3 s"
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(30)
        log.close()
        with open_connection(city_db) as conn:  # the site back where it was, whatever happened above
            moved = conn.execute("SELECT count(*) AS n FROM city.stall_site WHERE code = %s AND ST_X(geom) > %s",
                                 [site["code"], site["lon"] + 0.01]).fetchone()["n"]
        if moved:
            _move_site(city_db, site["code"], -0.02)
