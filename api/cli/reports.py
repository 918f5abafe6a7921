"""`cityops reports …`: citizen reports (市民城管通) over Open311."""

from __future__ import annotations

import typer

from api.cli.common import console, run_guarded
from gis.db import connect
from gis.settings import get_settings
from ops.reports import seed_demo_compounds

app = typer.Typer(help="Citizen reports over Open311 GeoReport v2.", no_args_is_help=True)


@app.command()
def compounds(count: int = typer.Option(368, min=1, help="how many stand-in residential compounds")) -> None:
    """Give the demo city residential compounds (reports inside one are shown at the compound)."""
    def action() -> None:
        with connect(get_settings()) as conn:
            made = seed_demo_compounds(conn, count)
            conn.commit()
        console.print(f"{made} residential compounds added")
    run_guarded(action)
