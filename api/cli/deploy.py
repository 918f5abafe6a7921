"""`cityops deploy …`: configuration for the engines cityops scales on (nginx in front, pgbouncer behind)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import typer

from api.cli.common import console, fail, run_guarded
from gis.settings import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "deploy"
app = typer.Typer(help="Render configuration for nginx and other engines in front of cityops.", no_args_is_help=True)


def render_nginx(upstreams: list[str], *, listen: str = "80", cache_dir: str = "/var/cache/nginx/cityops",
                 cache_max_size: str = "10g", tile_ttl: str = "1s", user: str | None = "www-data",
                 worker_processes: str = "auto", prefix: str | None = None, daemon: bool = True,
                 access_log: str = "off") -> str:
    """The nginx configuration for `upstreams` (host:port of each cityops server)."""
    if not upstreams:
        raise ValueError("name at least one cityops server (host:port)")
    return _render("nginx/cityops.conf.j2", upstreams=upstreams, listen=listen, cache_dir=cache_dir,
                   cache_max_size=cache_max_size, tile_ttl=tile_ttl, user=user, worker_processes=worker_processes,
                   prefix=prefix, daemon=daemon, access_log=access_log)


def render_pgbouncer(*, dbname: str, server_host: str, server_port: int = 5432, server_user: str = "cityops",
                     listen_addr: str = "127.0.0.1", listen_port: int = 6432, pool_size: int = 40,
                     max_client_conn: int = 2000, auth_type: str = "scram-sha-256",
                     auth_file: str | None = "/etc/pgbouncer/userlist.txt", prefix: str | None = None) -> str:
    """The pgbouncer configuration (transaction pooling) for one city database."""
    return _render("pgbouncer/pgbouncer.ini.j2", dbname=dbname, server_host=server_host, server_port=server_port,
                   server_user=server_user, listen_addr=listen_addr, listen_port=listen_port, pool_size=pool_size,
                   max_client_conn=max_client_conn, auth_type=auth_type, auth_file=auth_file, prefix=prefix)


def _render(template: str, **values) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    return environment.get_template(template).render(**values)


@app.command("nginx-config")
def nginx_config(
    upstream: list[str] = typer.Option(["127.0.0.1:8000"], help="a cityops server host:port (repeat for several)"),
    listen: str = typer.Option("80", help="what nginx listens on"),
    cache_dir: str = typer.Option("/var/cache/nginx/cityops", help="nginx's tile cache folder"),
    cache_max_size: str = typer.Option("10g", help="the tile cache's size limit"),
    output: Path = typer.Option(None, "-o", "--output", help="write here instead of printing"),
) -> None:
    """The nginx configuration that puts a shared, never-stale tile cache in front of cityops servers."""
    def action() -> None:
        if not all(":" in u for u in upstream):
            fail("each --upstream is host:port, e.g. 127.0.0.1:8000")
        _emit(render_nginx(upstream, listen=listen, cache_dir=cache_dir, cache_max_size=cache_max_size), output,
              f"nginx -t -c {output.resolve() if output else ''}")
    run_guarded(action)


@app.command("pgbouncer-config")
def pgbouncer_config(
    server_host: str = typer.Option(..., help="the primary's host or Unix-socket folder"),
    dbname: str = typer.Option("cityops", help="the city database"),
    pool_size: int = typer.Option(40, min=1, help="server connections to PostgreSQL at most"),
    max_client_conn: int = typer.Option(2000, min=1, help="client connections pgbouncer accepts"),
    listen_port: int = typer.Option(6432, help="the port pgbouncer listens on"),
    output: Path = typer.Option(None, "-o", "--output", help="write here instead of printing"),
) -> None:
    """The pgbouncer configuration (transaction pooling) that keeps PostgreSQL's connections bounded."""
    def action() -> None:
        _emit(render_pgbouncer(dbname=dbname, server_host=server_host, pool_size=pool_size,
                               max_client_conn=max_client_conn, listen_port=listen_port), output,
              f"pgbouncer -v {output.resolve() if output else ''}")
    run_guarded(action)


def _emit(text: str, output: Path | None, check: str) -> None:
    if output:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}; check it with: {check}")
    else:
        print(text, end="")
