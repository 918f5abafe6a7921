"""Settings of the vector tile service."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class TileSettings(CityopsSettings):
    tile_cache_mb: int = Field(default=256, ge=0, description="memory for cached vector tiles per server process (0: no cache)")
