"""The `cityops` command line: a thin face over the same functions the API calls."""

from __future__ import annotations

import typer

from api.cli import case, db, demo, deploy, drone, jobs, keys, query, reports, sensors, serve, tiles, transfer

app = typer.Typer(name="cityops", help="cityops — GIS platform for city operations (城市运行管理服务平台).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command()(serve.up)
app.command()(serve.serve)
app.command()(demo.demo)
app.command(name="import")(transfer.import_)
app.command()(transfer.export)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(query.app, name="query")
app.add_typer(tiles.app, name="tiles")
app.add_typer(drone.app, name="drone")
app.add_typer(jobs.app, name="jobs")
app.add_typer(deploy.app, name="deploy")
app.add_typer(reports.app, name="reports")
app.add_typer(case.app, name="case")
app.add_typer(sensors.app, name="sensors")


def main() -> None:
    app()
