"""Settings of the drone package."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class DroneSettings(CityopsSettings):
    drone_share_handles: bool = Field(
        default=True,
        description="detection blocks on both cores read through shared thread-safe raster handles "
                    "(false: one handle per thread, for a GDAL build whose handles are not thread-safe)",
    )
