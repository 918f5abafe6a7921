"""Settings of citizen reports over Open311 (env prefix CITYOPS_REPORTS_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from gis.settings import CityopsSettings


class ReportSettings(CityopsSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_REPORTS_", env_file=".env", extra="ignore")

    jurisdiction_id: str = Field(default="suqian.cityops", description="the Open311 jurisdiction this server answers for")
    duplicate_radius_m: float = Field(default=50.0, gt=0, le=500, description="open reports of one service this close are suggested as duplicates")
    reopen_days: int = Field(default=7, ge=1, description="a reporter may reopen a report this many days after its case closed")
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="largest photo upload accepted, in bytes")
    max_photo_pixels: int = Field(default=50_000_000, gt=0, description="largest photo accepted, in pixels (decompression bombs)")
    # 1000 px: a quarter of a 12 MP phone photo's side, so its JPEG decodes at ¼ scale (≈4× faster than full size)
    photo_max_side: int = Field(default=1000, ge=320, description="stored photos are resized to at most this many pixels a side")
    exif_gcj02_tolerance_m: float = Field(default=100.0, gt=0, description="a location this close to the photo's GPS once read as GCJ-02, and not as sent, is taken for undeclared GCJ-02")
    device_limit: int = Field(default=5, ge=1, description="submissions one device may make per rate window")
    ip_limit: int = Field(default=30, ge=1, description="submissions one IP address may make per rate window")
    rate_window_s: int = Field(default=60, ge=1, description="length of the rate-limit window in seconds")
    reward_fen: int = Field(default=200, gt=0, description="reward for an accepted report, in fen (分)")
    list_days: int = Field(default=90, ge=1, description="GET requests defaults to (and may span at most) this many days")
    list_limit: int = Field(default=1000, ge=1, description="most requests one GET requests answer returns")

