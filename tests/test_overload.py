"""Overload is a fast 503 + Retry-After, never a hang (issue 13: ~30 concurrent requests froze the
API for 30 s). A real server with a two-connection pool and a 0.5 s pool wait takes 60 concurrent
heavy requests: each answers 200 or 503 with Retry-After within a bounded time, and the server
serves normally right after."""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

from bench.servers import free_port, running
from tests.conftest import ARTIFACTS

HEAVY = "/collections/components/items?limit=10000&f=json"


def test_overload_answers_fast_with_retry_after(city_db, settings):
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir),
           "CITYOPS_POOL_MIN_SIZE": "1", "CITYOPS_POOL_MAX_SIZE": "2", "CITYOPS_POOL_TIMEOUT_S": "0.5",
           "CITYOPS_RATE_IP_PER_S": "0"}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port)]
    with running("overload_server", command, env, port, log_dir=ARTIFACTS, timeout_s=90) as base:

        async def one(client: httpx.AsyncClient) -> tuple[int, float, str | None]:
            started = time.monotonic()
            answer = await client.get(HEAVY)
            return answer.status_code, time.monotonic() - started, answer.headers.get("Retry-After")

        async def storm():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                return await asyncio.gather(*(one(client) for _ in range(60)))

        answers = asyncio.run(storm())
        statuses = {status for status, _, _ in answers}
        assert statuses <= {200, 503}, statuses
        assert 503 in statuses  # two connections cannot serve sixty heavy requests at once
        assert all(retry is not None and int(retry) >= 1 for status, _, retry in answers if status == 503)
        slowest_refusal = max(seconds for status, seconds, _ in answers if status == 503)
        assert slowest_refusal < 20, f"a 503 took {slowest_refusal:.1f} s"
        assert httpx.get(f"{base}/collections/stall_sites/items?limit=1", timeout=10).status_code == 200
