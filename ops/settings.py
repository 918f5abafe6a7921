"""Settings of live operations (env prefix CITYOPS_)."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class OpsSettings(CityopsSettings):
    reading_max_future_s: int = Field(300, ge=0, description="a reading timestamped more than this many seconds ahead of the server clock is refused")
    reading_max_age_days: int = Field(35, ge=1, description="a reading older than this many days is refused (the archive keeps whole months)")
    reading_batch_limit: int = Field(10_000, ge=1, description="most readings accepted in one CreateObservations request")
    rule_cache_s: float = Field(10.0, ge=0, description="alarm rules and the working calendar are re-read at most this often by the readings path (an edit applies within it)")
    sweep_interval_s: float = Field(30.0, gt=0, description="how often the API marks silent sensors offline and warns/escalates late cases")

