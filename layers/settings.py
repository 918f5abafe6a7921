"""Settings of the layers package: exports run as jobs."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class ExportSettings(CityopsSettings):
    export_keep_hours: float = Field(
        default=24, gt=0,
        description="how long the file of an export job (POST /exports/…) stays downloadable; older ones are removed "
                    "by the job workers' sweep (every CITYOPS_JOB_SWEEP_S)")
