"""Reading the wall's Server-Sent Events (`GET /live`) in tests."""

from __future__ import annotations

import json
import threading

import httpx


class EventStream:
    """Reads `GET /live` in a thread; `next(event)` waits for the next event of that name."""

    def __init__(self, url: str):
        self.events: list[tuple[str, dict]] = []
        self.seen = threading.Condition()
        self.client = httpx.Client(timeout=httpx.Timeout(5, read=None))
        self.response = self.client.send(self.client.build_request("GET", url), stream=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name = None
        try:
            for line in self.response.iter_lines():
                if line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and name:
                    with self.seen:
                        self.events.append((name, json.loads(line.split(":", 1)[1])))
                        self.seen.notify_all()
        except httpx.HTTPError:
            pass

    def next(self, name: str, after: int, timeout: float = 5.0) -> tuple[int, dict]:
        with self.seen:
            found = self.seen.wait_for(lambda: any(n == name for n, _ in self.events[after:]), timeout)
            assert found, f"no {name!r} event within {timeout} s; events: {self.events[after:]}"
            index = next(i for i in range(after, len(self.events)) if self.events[i][0] == name)
            return index + 1, self.events[index][1]

    def change_of(self, table: str, after: int, timeout: float = 5.0) -> tuple[int, dict]:
        """The first change event naming `table` after event `after` (an earlier write's burst may
        still be in flight when a test starts)."""
        while True:
            after, change = self.next("change", after, timeout)
            if table in change["tables"]:
                return after, change

    def figures_after(self, table: str, after: int, timeout: float = 5.0) -> tuple[int, dict]:
        """The figures sent with the first change of `table` after event `after`."""
        return self.next("figures", self.change_of(table, after, timeout)[0], timeout)

    def close(self) -> None:
        self.response.close()
        self.client.close()
