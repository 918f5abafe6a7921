"""`cityops deploy …`: configuration for the engines cityops scales on (nginx in front)."""

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
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    return environment.get_template("nginx/cityops.conf.j2").render(
        upstreams=upstreams, listen=listen, cache_dir=cache_dir, cache_max_size=cache_max_size, tile_ttl=tile_ttl,
        user=user, worker_processes=worker_processes, prefix=prefix, daemon=daemon, access_log=access_log)


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
        text = render_nginx(upstream, listen=listen, cache_dir=cache_dir, cache_max_size=cache_max_size)
        if output:
            output.write_text(text, encoding="utf-8")
            console.print(f"wrote {output}; check it with: nginx -t -c {output.resolve()}")
        else:
            print(text, end="")
    run_guarded(action)
