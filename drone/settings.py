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
    rendition_city_zoom: int = Field(
        default=11, ge=0, le=22,
        description="WebMercatorQuad zoom the whole city is seen at: display COGs keep overviews down to it")
    rendition_jpeg_quality: int = Field(
        default=75, ge=10, le=100,
        description="JPEG quality of RGB display COGs (the analysis COG stays lossless); higher costs decode time per cold tile")
