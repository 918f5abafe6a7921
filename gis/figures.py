"""The command wall's live figures, computed by one query so every figure describes the same instant.

"Today" is the city's calendar day (Asia/Shanghai), whatever the server's time zone. The closure
rate is the share of the last 30 days' filed cases (立案) that are closed (结案), the figure the
城市运行管理服务平台 evaluation reports; voided cases are not counted.
"""

from __future__ import annotations

import psycopg

CITY_TIME_ZONE = "Asia/Shanghai"

FIGURES_SQL = """
WITH day AS (
    SELECT date_trunc('day', now() AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS start
)
SELECT
    (SELECT coalesce(json_object_agg(alarm_type, n ORDER BY alarm_type), '{}')
       FROM (SELECT alarm_type, count(*) AS n FROM city.alarm WHERE status <> 'cleared' GROUP BY alarm_type) a
    ) AS open_alarms_by_type,
    (SELECT count(*) FROM city.stall_site WHERE occupied > 0) AS stall_sites_occupied,
    (SELECT count(*) FROM city.stall_site) AS stall_sites_total,
    (SELECT count(*) FROM city.case_file, day WHERE reported_at >= day.start) AS cases_reported_today,
    (SELECT count(*) FROM city.case_file, day WHERE filed_at >= day.start) AS cases_filed_today,
    (SELECT count(*) FROM city.case_file, day WHERE closed_at >= day.start) AS cases_closed_today,
    (SELECT count(*) FILTER (WHERE closed_at IS NOT NULL)::float8 / nullif(count(*), 0)
       FROM city.case_file
      WHERE filed_at >= now() - interval '30 days' AND state <> 'voided'
    ) AS closure_rate_30d,
    now() AS as_of
"""


async def read_figures(conn: psycopg.AsyncConnection) -> dict:
    """All figures of the wall as one JSON-ready dict."""
    row = await (await conn.execute(FIGURES_SQL, {"tz": CITY_TIME_ZONE})).fetchone()
    by_type = row["open_alarms_by_type"]
    occupied, total = row["stall_sites_occupied"], row["stall_sites_total"]
    rate = row["closure_rate_30d"]
    return {
        "open_alarms": {"total": sum(by_type.values()), "by_type": by_type},
        "stall_sites": {"occupied": occupied, "total": total,
                        "percent": round(100 * occupied / total, 1) if total else None},
        "cases_today": {"reported": row["cases_reported_today"], "filed": row["cases_filed_today"],
                        "closed": row["cases_closed_today"]},
        "closure_rate_30d_percent": round(100 * rate, 1) if rate is not None else None,
        "as_of": row["as_of"].isoformat(),
    }
