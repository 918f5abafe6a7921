"""`cityops demo`: load the synthetic Suqian."""

from __future__ import annotations

import time

import typer

from api.cli.common import console, run_guarded, table_progress
from gis.db import connect
from gis.settings import get_settings
from layers.demo.load import load_demo


def demo(
    scale: int = typer.Option(1, min=1, max=50, help="multiply component, stall, alarm and case counts (10 ≈ 1 million components)"),
    replace: bool = typer.Option(False, help="replace a city already in the database"),
) -> None:
    """Load the demo city (宿迁市, five real district codes) in one transaction."""
    def action() -> None:
        started = time.perf_counter()
        with connect(get_settings()) as conn, table_progress(f"Generating and loading the demo city at scale {scale} …") as report:
            summary = load_demo(conn, scale=scale, replace=replace, progress=report)
            conn.commit()
        seconds = time.perf_counter() - started
        console.print(f"loaded {summary.total:,} rows ({summary.rows['component']:,} components) in {seconds:.1f} s")
    run_guarded(action)
