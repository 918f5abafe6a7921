"""The command wall's live figures, computed by one query so every figure describes the same instant.

"Today" is the city's calendar day (Asia/Shanghai), whatever the server's time zone. The closure
rate is the share of the last 30 days' filed cases (立案) that are closed (结案), the figure the
城市运行管理服务平台 evaluation reports; voided cases are not counted. Per department: the share of
cases handled (反馈) within their time limit, today and over 30 days, and the rework rate (cases sent
back at 核查).
"""

from __future__ import annotations

import psycopg

CITY_TIME_ZONE = "Asia/Shanghai"

FIGURES_SQL = """
WITH day AS (
    SELECT date_trunc('day', now() AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS start
), window_start AS (
    -- no event of a case precedes its report: the months of case events before the window's
    -- earliest report are never read (case_event is partitioned by month)
    SELECT coalesce(min(reported_at), now()) AS at FROM city.case_file
    WHERE handled_at >= now() - interval '30 days' AND deadline_at IS NOT NULL
)
SELECT
    (SELECT coalesce(json_object_agg(alarm_type, n ORDER BY alarm_type), '{}')
       FROM (SELECT alarm_type, count(*) AS n FROM city.alarm_open GROUP BY alarm_type) a
    ) AS open_alarms_by_type,
    (SELECT count(*) FROM city.manhole_sensor WHERE state = 'offline') AS offline_sensors,
    (SELECT coalesce(json_object_agg(state, n ORDER BY state), '{}')
       FROM (SELECT state, count(*) AS n FROM city.case_file
              WHERE state IN ('reported', 'filed', 'dispatched', 'processing', 'handled', 'checked', 'deferred')
              GROUP BY state) s
    ) AS open_cases_by_state,
    (SELECT count(*) FROM city.case_file WHERE state IN ('dispatched', 'processing') AND deadline_at <= now()) AS cases_overdue,
    (SELECT count(*) FROM city.case_file WHERE state IN ('reported', 'filed') AND responsible_unit_id IS NULL) AS cases_unrouted,
    (SELECT coalesce(json_agg(d ORDER BY d.department), '[]') FROM (
        SELECT u.department,
               count(*) FILTER (WHERE c.handled_at >= day.start) AS handled_today,
               round(100.0 * count(*) FILTER (WHERE c.handled_at >= day.start AND c.handled_at <= c.deadline_at)
                     / nullif(count(*) FILTER (WHERE c.handled_at >= day.start), 0), 1) AS on_time_today_percent,
               count(*) AS handled_30d,
               round(100.0 * count(*) FILTER (WHERE c.handled_at <= c.deadline_at) / count(*), 1) AS on_time_30d_percent,
               round(100.0 * count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM city.case_event e WHERE e.case_id = c.id AND e.action = 'check'
                     AND (e.details->>'passed')::boolean = false AND e.at >= window_start.at)) / count(*), 1) AS rework_30d_percent
        FROM city.case_file c JOIN city.responsible_unit u ON u.id = c.responsible_unit_id, day, window_start
        WHERE c.handled_at >= now() - interval '30 days' AND c.deadline_at IS NOT NULL
        GROUP BY u.department) d
    ) AS departments,
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
        "offline_sensors": row["offline_sensors"],
        "open_cases": {"total": sum(row["open_cases_by_state"].values()), "by_state": row["open_cases_by_state"],
                       "overdue": row["cases_overdue"], "unrouted": row["cases_unrouted"]},
        "departments": row["departments"],
        "stall_sites": {"occupied": occupied, "total": total,
                        "percent": round(100 * occupied / total, 1) if total else None},
        "cases_today": {"reported": row["cases_reported_today"], "filed": row["cases_filed_today"],
                        "closed": row["cases_closed_today"]},
        "closure_rate_30d_percent": round(100 * rate, 1) if rate is not None else None,
        "as_of": row["as_of"].isoformat(),
    }
