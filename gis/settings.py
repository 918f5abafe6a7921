"""Configuration, read once from the environment (CITYOPS_*) with pydantic-settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="libpq URL of an existing PostGIS database; unset = the self-managed cluster",
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".cityops",
        description="git-ignored folder for the self-managed cluster, orthophotos and caches",
    )
    read_database_url: str | None = Field(
        default=None,
        description="libpq URL of a streaming replica (or a multi-host URL with target_session_attrs=prefer-standby) "
                    "that serves reads (vector tiles); writes and the change feed stay on the primary; unset = all on the primary",
    )
    replica_wait_ms: int = Field(
        default=500, ge=0, le=10_000,
        description="how long a read waits for the replica to replay a change it was told of before it goes to the primary",
    )
    pgbouncer: bool = Field(
        default=False,
        description="the database URL goes through pgbouncer in transaction mode: no server-side prepared statements "
                    "(pgbouncer 1.18 cannot carry them across transactions); set CITYOPS_LISTEN_DATABASE_URL too",
    )
    listen_database_url: str | None = Field(
        default=None,
        description="direct libpq URL of the primary for the change feed's LISTEN (a transaction-mode pooler cannot "
                    "hold one); unset = the database URL",
    )
    database_name: str = "cityops"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    pool_min_size: int = 2
    pool_max_size: int = 16
    tile_cache_mb: int = Field(default=256, ge=0)
    job_workers: int = Field(default=2, ge=1, description="threads running background jobs (imports, detections) "
                                                         "per server process; at most one job of each kind at a time")
    job_stale_s: float = Field(default=30, gt=0, description="a running job whose worker has not beaten for this "
                                                             "long is queued again (its worker died)")

    @property
    def uses_own_cluster(self) -> bool:
        return self.database_url is None


@lru_cache
def get_settings() -> Settings:
    return Settings()
