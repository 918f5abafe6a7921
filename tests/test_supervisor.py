"""`cityops serve` keeps serving when a worker dies (issue 13: one segfault took the platform down)."""

from __future__ import annotations

import os
import http.client
import signal
import sys
import time
from pathlib import Path

import httpx

from bench.servers import free_port, running
from tests.conftest import ARTIFACTS



def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def _server_pid(port: int) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in command and str(port).encode() in command:
                return int(entry.name)
    raise AssertionError("the cityops serve process is not running")


def test_a_crashed_worker_is_replaced(city_db, settings):
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir)}
    with running("supervised_server", command, env, port, log_dir=ARTIFACTS, timeout_s=90) as base:
        supervisor = _server_pid(port)
        workers = [pid for pid in _children(supervisor) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGSEGV)  # what the cql2 stack overflow did
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("the server did not come back after its worker crashed")
        replaced = _children(supervisor)
        assert workers[0] not in replaced and replaced


def test_an_idle_keep_alive_connection_outlives_the_clients_idle_time(city_db, settings):
    # uvicorn closed idle connections after 5 s: a client (httpx keeps them 5 s, nginx's upstream pool
    # 60 s) sending on one as it closed got a reset (red-team concurrency run: ReadError,
    # RemoteProtocolError), behind nginx a lost POST is a 502
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir), "CITYOPS_KEEP_ALIVE_S": "12"}
    with running("keep_alive_server", command, env, port, log_dir=ARTIFACTS, timeout_s=90):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one socket, never reopened
        try:
            connection.request("GET", "/healthz")
            first = connection.getresponse()
            assert first.status == 200 and first.read()
            time.sleep(7)  # past uvicorn's default, within the setting
            connection.request("GET", "/healthz")  # on the same socket: RemoteDisconnected if the server closed it
            again = connection.getresponse()
            assert again.status == 200 and again.read()
        finally:
            connection.close()
