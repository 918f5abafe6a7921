"""HTTP-edge security settings (CITYOPS_*): body sizes, CORS, rate limits. Limits on what reaches
the database and parsers live in gis.limits."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class SecuritySettings(CityopsSettings):

    body_max_mb: float = Field(
        default=1.0, gt=0, description="largest request body (MB) of any route not listed below")
    feature_body_max_mb: float = Field(
        default=16.0, gt=0, description="largest body (MB) of a feature write, /locate or /within request")
    import_upload_max_mb: float = Field(
        default=512.0, gt=0, description="largest upload (MB) to POST /imports")
    citizen_report_max_mb: float = Field(
        default=60.0, gt=0, description="largest Open311 report or media upload (MB): up to five photos with the form")
    orthophoto_max_mb: float = Field(
        default=4096.0, gt=0, description="largest orthophoto upload (MB) to POST /orthophotos")
    cors_origins: list[str] = Field(
        default=["*"], description="origins other sites' browsers may read the API from (JSON list): public OGC data "
                                   "is read by other departments' web maps (OpenLayers, MapLibre); [] = same origin only")
    cors_methods: list[str] = Field(
        default=["GET", "HEAD"], description="methods allowed cross-origin when cors_origins is set")
    rate_ip_per_s: float = Field(
        default=200.0, ge=0, description="sustained requests per second per client IP (0 = no limit)")
    rate_ip_burst: int = Field(
        default=2000, ge=1, description="requests a client IP may send at once before the rate applies")
    rate_key_per_s: float = Field(
        default=100.0, ge=0, description="sustained requests per second per access key (0 = no limit)")
    rate_key_burst: int = Field(default=1000, ge=1, description="burst per access key")
    failed_auth_per_min: float = Field(
        default=10.0, ge=0, description="failed key attempts per minute per client IP before keyed "
                                        "requests from it get 429 (0 = no limit)")
    failed_auth_burst: int = Field(default=20, ge=1, description="failed key attempts allowed at once")
    key_cache_s: float = Field(
        default=10.0, ge=0, description="seconds a key found valid is remembered by the check made before a write's "
                                        "body is read (the route checks the key again itself); 0 = look it up every time")
    rate_table_max: int = Field(
        default=100_000, ge=100, description="most clients the in-process rate limiter remembers")

