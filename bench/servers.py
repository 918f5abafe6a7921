"""Loopback servers for tests and benchmarks: a free port, and a process that is up when its
health URL answers (and is stopped, with its log kept, when the block ends)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running(name: str, command: list[str], env: dict[str, str], port: int, *, log_dir: Path,
            timeout_s: float = 180, health_path: str = "/healthz") -> Iterator[str]:
    """Start `command` (which must listen on `port`), wait for `health_path` to answer 200, yield the base URL."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "w") as log:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    if httpx.get(f"{base}{health_path}", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {log.name}")
                time.sleep(0.3)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def fetch_each_once(base: str, paths: list[str], connections: int, listing: Path, threads: int = 2) -> dict:
    """wrk over `paths`, each once, `connections` at a time (bench/tile_list.lua); a Python client would
    be the bottleneck. Returns wrk's figures (n, latency percentiles in ms, errors: non-2xx answers
    included) and `seconds`, from starting wrk to the last answer."""
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(paths) + "\n")
    connections = min(connections, len(paths))  # no connection set up for nothing to ask
    threads = min(connections, threads)
    started = time.perf_counter()
    wrk = subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", "-d3600s", "--timeout", "60s", "-s",
         str(Path(__file__).with_name("tile_list.lua")), base],
        env={**os.environ, "TILE_LIST": str(listing), "WRK_THREADS": str(threads)}, stdout=subprocess.PIPE, text=True)
    finished = 0
    for line in wrk.stdout:
        finished += line.strip() == "THREAD_DONE"
        if finished == threads:
            break
    elapsed = time.perf_counter() - started
    wrk.send_signal(signal.SIGINT)  # wrk would wait out -d; interrupted, it reports at once
    figures = json.loads(wrk.communicate(timeout=60)[0].strip().splitlines()[-1])
    return {**figures, "seconds": elapsed}
