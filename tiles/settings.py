"""Settings of the tiles package: the vector and raster tile caches and raster tile encoding."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class TileSettings(CityopsSettings):
    tile_cache_mb: int = Field(default=256, ge=0, description="memory for cached vector tiles per server process (0: no cache)")
    raster_cache_mb: int = Field(default=256, ge=0, description="memory for cached orthophoto and mosaic tiles per server process")
    raster_jpeg_quality: int = Field(default=85, ge=10, le=100, description="quality of JPEG and WebP raster tiles")
