"""`cityops sensors …`: keeping the readings archive."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import psycopg
import typer
from psycopg.rows import dict_row

from api.cli.common import console, run_guarded
from gis.db import conninfo
from gis.settings import get_settings
from ops import partitions

app = typer.Typer(help="Sensor readings: retention.", no_args_is_help=True)


@app.command()
def retention(keep_days: int = typer.Option(400, min=1, help="keep at least this many days of readings")) -> None:
    """Drop the month partitions of city.sensor_reading wholly older than --keep-days (whole months only)."""
    async def work():
        async with await psycopg.AsyncConnection.connect(conninfo(get_settings()), row_factory=dict_row, autocommit=True) as conn:
            return await partitions.READINGS.drop_months_before(conn, date.today() - timedelta(days=keep_days))

    def action() -> None:
        dropped, _kept = asyncio.run(work())
        console.print(f"dropped {len(dropped)} month(s): {', '.join(dropped) or 'none'}")
    run_guarded(action)
