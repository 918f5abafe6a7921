"""Settings of the web server (`cityops serve` / `cityops up`)."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class ServerSettings(CityopsSettings):
    host: str = Field(default="127.0.0.1", description="address the server listens on")
    port: int = Field(default=8000, ge=1, le=65535, description="port the server listens on")
    workers: int = Field(default=1, ge=1, description="uvicorn worker processes (each has its own pool, caches and job workers)")
    keep_alive_s: int = Field(default=75, ge=1, description=(
        "seconds an idle keep-alive connection is kept open; longer than the idle time of the clients and "
        "proxies in front (nginx's upstream keepalive_timeout is 60 s, httpx's 5 s), so the server never "
        "closes a connection the moment a client sends on it (a POST lost so is a 502 behind nginx)"))
