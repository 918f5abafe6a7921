"""Settings of the drone package (environment CITYOPS_RENDITION_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RenditionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_RENDITION_", env_file=".env", extra="ignore")

    city_zoom: int = Field(default=11, ge=0, le=22,
                           description="WebMercatorQuad zoom the whole city is seen at: display COGs keep "
                                       "overviews down to it, so a city-wide view reads small overviews")
    jpeg_quality: int = Field(default=75, ge=10, le=100,
                              description="JPEG quality of RGB display COGs (the analysis COG stays lossless); 75 "
                                          "as rio-cogeo's profile: a higher one costs decode time on every cold tile")
