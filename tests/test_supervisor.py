"""`cityops serve` keeps serving when a worker dies (issue 13: one segfault took the platform down)."""

from __future__ import annotations

import os
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
