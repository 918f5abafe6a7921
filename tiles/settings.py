"""Settings of the tiles package: the vector and raster tile caches, raster tile encoding, and the
tile jobs started over HTTP."""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class TileSettings(CityopsSettings):
    tile_cache_mb: int = Field(default=256, ge=0, description="memory for cached vector tiles per server process (0: no cache)")
    raster_cache_mb: int = Field(default=256, ge=0, description="memory for cached orthophoto and mosaic tiles per server process")
    raster_png_zlevel: int = Field(default=1, ge=1, le=9, description=(
        "zlib level of PNG raster tiles (1: encodes 3x faster than 6 for ~15 % more bytes)"))
    raster_jpeg_quality: int = Field(default=85, ge=10, le=100, description="quality of JPEG and WebP raster tiles")
    tile_job_max_tiles: int = Field(default=100_000, ge=1, description=(
        "most tiles one tile archive or seeding started over HTTP (POST /tile-archives, /tile-seeds) may build; "
        "an archive holds its tiles in memory until it is written"))
    tile_archive_keep_hours: float = Field(default=24, gt=0, description=(
        "how long the file of a tile archive built over HTTP stays downloadable; older ones are removed by the job "
        "workers' sweep (every CITYOPS_JOB_SWEEP_S)"))
