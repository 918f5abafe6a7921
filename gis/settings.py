"""Settings, one pydantic-settings class per concern, each in its own package (`gis` here: the
database and the job system; `api.settings`: the web server; `tiles.settings`: the tile cache;
`drone.settings`: change detection), all read from the environment (`CITYOPS_…`, or `.env`).

One way to get them: `settings_of(SomeSettings)`, read once per process. Every field has a
description; the README's configuration table lists them all (a test checks it).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class CityopsSettings(BaseSettings):
    """Base of every settings class: environment variables `CITYOPS_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_", env_file=".env", extra="ignore")


S = TypeVar("S", bound=BaseSettings)


@lru_cache
def settings_of(kind: type[S]) -> S:
    """The settings of one concern, read from the environment once per process."""
    return kind()


class Settings(CityopsSettings):
    """The database: where it is (or the self-managed cluster and its state folder) and the pool."""

    database_url: str | None = Field(
        default=None,
        description="libpq URL of an existing PostGIS database; unset = the self-managed cluster",
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".cityops",
        description="git-ignored folder for the self-managed cluster, orthophotos, uploads and caches",
    )
    read_database_url: str | None = Field(
        default=None,
        description="libpq URL of a streaming replica (or a multi-host URL with target_session_attrs=prefer-standby) "
                    "that serves reads (tiles, Features pages, planners' queries); writes and the change feed stay on the primary; unset = all on the primary",
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
    database_name: str = Field(default="cityops", description="database name in the self-managed cluster")
    pool_min_size: int = Field(default=2, ge=0, description="connections the API's pool keeps open")
    pool_max_size: int = Field(default=16, ge=1, description="most connections of the API's pool (one per request)")

    @property
    def uses_own_cluster(self) -> bool:
        return self.database_url is None


class JobSettings(CityopsSettings):
    """The background job system (`gis.jobs`): imports, exports, change detections, tile jobs."""

    job_workers: int = Field(default=3, ge=1, description="threads running background jobs per server process "
                                                         "(at most two imports and one detection at a time)")
    job_stale_s: float = Field(default=30, gt=0, description="a running job whose worker has not beaten for this long "
                                                             "is queued again (its worker died)")
    job_sweep_s: float = Field(default=300, gt=0, description="how often each worker pool removes the files no open job "
                                                             "accounts for: API exports past their keep time, uploads "
                                                             "and partial files of dead runs")


def get_settings() -> Settings:
    return settings_of(Settings)
