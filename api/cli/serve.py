"""`cityops serve` and `cityops up`: run the platform."""

from __future__ import annotations

import socket

import typer
import uvicorn
from uvicorn.supervisors import Multiprocess

from api.cli.common import console, fail, run_guarded, table_progress
from gis import provision
from gis.db import open_connection
from api.settings import ServerSettings
from gis.settings import get_settings, settings_of
from layers.demo.load import city_row_counts, load_demo


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            fail(f"port {port} on {host} is in use: stop the other server or pick another with --port or CITYOPS_PORT")


def _serve(host: str, port: int, workers: int, keep_alive_s: int) -> None:
    """Workers always run under uvicorn's process supervisor, even a single one: a worker that
    dies (a segfault in a C extension, the OOM killer) is replaced within a second, instead of
    taking the platform down with it."""
    _check_port_free(host, port)
    console.print(f"cityops serving at http://{host}:{port}/  (map: /map, API: /api, docs: /docs)")
    config = uvicorn.Config("api.app:create_app", factory=True, host=host, port=port, workers=workers,
                            log_level="info", proxy_headers=True, timeout_keep_alive=keep_alive_s)
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def serve(
    host: str = typer.Option(None, help="address to listen on (default CITYOPS_HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default CITYOPS_PORT or 8000)"),
    workers: int = typer.Option(None, help="uvicorn worker processes (default CITYOPS_WORKERS or 1)"),
) -> None:
    """Serve the API and the web map (the database must be up: see `cityops up`)."""
    server = settings_of(ServerSettings)
    run_guarded(lambda: _serve(host or server.host, port or server.port, workers or server.workers, server.keep_alive_s))


def up(
    host: str = typer.Option(None, help="address to listen on (default CITYOPS_HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default CITYOPS_PORT or 8000)"),
    workers: int = typer.Option(None, help="uvicorn worker processes"),
    scale: int = typer.Option(1, min=1, max=50, help="demo scale if the database is empty"),
    demo: bool = typer.Option(True, help="load the demo city when the database holds no city"),
) -> None:
    """Start the database, migrate, load the demo city if empty, and serve."""
    settings = get_settings()

    def action() -> None:
        server = settings_of(ServerSettings)
        host_, port_ = host or server.host, port or server.port
        _check_port_free(host_, port_)
        info = provision.prepare(settings)
        with open_connection(info) as conn:
            empty = not city_row_counts(conn)["district"]
            if empty and demo:
                with table_progress(f"Empty database: loading the demo city (scale {scale}) …") as report:
                    load_demo(conn, scale=scale, progress=report)
                conn.commit()
        _serve(host_, port_, workers or server.workers, server.keep_alive_s)

    run_guarded(action)
