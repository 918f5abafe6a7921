"""What every command shares: settings, a one-line error and non-zero exit, progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gis.errors import CityOpsError

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def run_guarded(action: Callable[[], None]) -> None:
    """Domain errors become one line on stderr and exit status 1."""
    try:
        action()
    except CityOpsError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; nothing was committed", code=130)


@contextmanager
def table_progress(title: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per table; yields the callback that layers/ loaders call."""
    with Progress(
        TextColumn("[bold]{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(table: str, advance: int, total: int) -> None:
            if not tasks:
                console.print(title)
            if table not in tasks:
                tasks[table] = progress.add_task(table, total=total)
            progress.advance(tasks[table], advance)

        yield report
