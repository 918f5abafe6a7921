"""One pool connection per request: routes that check a key or stream items used to hold two,
and as many such requests as the pool has connections, each holding one and waiting for its
second, froze the API until the pool timed out (30 s) — issue 13, item 2. Here a live uvicorn
with a pool of 4 takes 60 concurrent keyed and streaming requests and answers them all at once."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
import pytest

from bench.servers import free_port, running
from tests.conftest import ARTIFACTS, bearer

POOL = 4
CONCURRENT = 60


@pytest.fixture(scope="module")
def small_pool_server(city_db, settings):
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir),
           "CITYOPS_POOL_MIN_SIZE": "1", "CITYOPS_POOL_MAX_SIZE": str(POOL)}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("small_pool_server", command, env, port, log_dir=ARTIFACTS, timeout_s=60) as base:
        yield base


def test_many_keyed_and_streaming_requests_never_wait_for_a_second_connection(small_pool_server, keys):
    requests = [
        ("GET", "/imports/987654321", bearer(keys["viewer"]), 404),                       # key checked, then a read
        ("GET", "/collections/streetlights/items?f=jsonseq&limit=3000", {}, 200),          # streamed
        ("GET", "/collections/stall_sites/items?limit=200&bbox=118.2,33.9,118.3,34.0", {}, 200),
        ("DELETE", "/collections/stall_sites/items/999999999", {**bearer(keys["editor"]), "If-Match": '"x"'}, 404),  # a write
        ("POST", "/drone/detections/987654321/cancel", bearer(keys["enforcement"]), 404),  # the synchronous pool
    ]

    async def fire() -> list[tuple[int, int, float]]:
        async with httpx.AsyncClient(base_url=small_pool_server, timeout=60) as client:
            async def one(i: int) -> tuple[int, int, float]:
                method, path, headers, expected = requests[i % len(requests)]
                started = time.monotonic()
                response = await client.request(method, path, headers=headers)
                await response.aread()
                return response.status_code, expected, time.monotonic() - started
            return await asyncio.gather(*(one(i) for i in range(CONCURRENT)))

    started = time.monotonic()
    answers = asyncio.run(fire())
    elapsed = time.monotonic() - started
    assert [status for status, _, _ in answers] == [expected for _, expected, _ in answers]
    # A deadlocked pool answers after its 30 s timeout; here every request is done long before.
    assert elapsed < 15, f"{CONCURRENT} requests took {elapsed:.1f} s (slowest {max(t for *_, t in answers):.1f} s)"
