"""Running the `cityops` command line in tests, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

CITYOPS = [sys.executable, "-m", "api.cli"]


def cityops(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CITYOPS, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
