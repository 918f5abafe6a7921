"""Limits that keep one request from taking the platform down, read once from CITYOPS_* variables.

They bound what reaches a parser or the database (filter size and nesting, geometry vertices,
import rows and bytes) and how long a request may wait for or hold a database connection.
Every limit is checked before the expensive work it protects, and crossing one is a 400/413
with the limit and the setting that raises it.
"""

from __future__ import annotations

from pydantic import Field

from gis.settings import CityopsSettings


class LimitSettings(CityopsSettings):

    filter_max_chars: int = Field(
        default=8192, ge=64,
        description="longest CQL2 filter (text or JSON) accepted; longer ones are refused before parsing",
    )
    filter_max_depth: int = Field(
        default=24, ge=2, le=200,
        description="deepest nesting of a CQL2 filter (brackets and NOT) accepted; the cql2 parser "
                    "recurses per level and overflows its stack at a few thousand",
    )
    filter_max_terms: int = Field(
        default=200, ge=1,
        description="most predicates and values one CQL2 filter may hold",
    )
    feature_max_vertices: int = Field(
        default=100_000, ge=4,
        description="most vertices one feature's geometry may have (API writes and imports)",
    )
    statement_timeout_s: float = Field(
        default=30.0, gt=0,
        description="server-side statement_timeout of API connections; a longer query is cancelled (503)",
    )
    pool_timeout_s: float = Field(
        default=5.0, gt=0,
        description="longest a request waits for a free pooled connection before a fast 503 with Retry-After",
    )
    analysis_max_concurrent: int = Field(
        default=4, ge=1,
        description="most planners' analyses (density, coverage gaps, evaluation: seconds of database work each) one "
                    "server process runs at once; more wait up to CITYOPS_POOL_TIMEOUT_S for a turn, then a fast 503, "
                    "so the pool's other connections stay free for writes and pages",
    )
    retry_after_s: int = Field(
        default=2, ge=1,
        description="Retry-After (seconds) sent with a 503 for overload or a cancelled statement",
    )
    import_max_rows: int = Field(
        default=2_000_000, ge=1,
        description="most features one import may hold",
    )
    import_max_uncompressed_mb: int = Field(
        default=2048, ge=1,
        description="most bytes (MB) an uploaded archive may expand to",
    )
    import_max_s: float = Field(
        default=1800.0, gt=0,
        description="longest wall time (seconds) one import may run; past it the import is stopped, rolled back "
                    "and its job failed with the reason, and its worker takes the next job",
    )
