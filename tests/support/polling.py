"""Waiting in tests for what another process or thread makes happen."""

from __future__ import annotations

import time

import pytest

DEADLINE_S = 1.0  # "within a second" is what the README promises for changes reaching tiles


def wait_for(fetch, condition, deadline_s: float = DEADLINE_S):
    """Polls fetch() until condition(result); returns the result and the seconds it took."""
    started = time.monotonic()
    while True:
        result = fetch()
        if condition(result):
            return result, time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"not seen within {deadline_s} s; last: {str(result)[:300]}")
        time.sleep(0.05)
