"""Settings of the tiles package (environment CITYOPS_RASTER_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RasterTileSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_RASTER_", env_file=".env", extra="ignore")

    cache_mb: int = Field(default=256, ge=0, description="MB of encoded orthophoto and mosaic tiles kept per process")
    jpeg_quality: int = Field(default=85, ge=10, le=100, description="quality of JPEG and WebP tiles")
