"""Settings of the drone package (environment, prefix CITYOPS_DRONE_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DroneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_DRONE_", env_file=".env", extra="ignore")

    share_handles: bool = Field(
        default=True,
        description="detection blocks on both cores read through shared thread-safe raster handles "
                    "(off: one handle per thread, for a GDAL build whose handles are not thread-safe)",
    )


@lru_cache
def get_drone_settings() -> DroneSettings:
    return DroneSettings()
