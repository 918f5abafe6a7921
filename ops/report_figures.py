"""Wall figures of citizen reports: today's reports, accepted and closed, the satisfaction of the
"was this fixed?" answers (last 30 days) and today's reports per item (the 15-item bar)."""

from __future__ import annotations

import psycopg

from ops.open311 import SERVICES

FIGURES_SQL = """
WITH day AS (SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS start)
SELECT (SELECT count(*) FROM city.citizen_report r, day WHERE r.requested_at >= day.start) AS reports_today,
       (SELECT count(*) FROM city.citizen_report r, day WHERE r.requested_at >= day.start AND r.review = 'accepted') AS accepted_today,
       (SELECT count(*) FROM city.citizen_report r JOIN city.case_file f ON f.id = r.case_id, day
        WHERE f.state IN ('closed', 'evaluated') AND f.closed_at >= day.start) AS closed_today,
       (SELECT avg(fixed::int) FROM city.report_feedback WHERE at >= now() - interval '30 days') AS satisfaction,
       (SELECT count(*) FROM city.report_feedback WHERE at >= now() - interval '30 days') AS answers,
       (SELECT coalesce(jsonb_object_agg(service_code, n), '{}') FROM (
            SELECT r.service_code, count(*) AS n FROM city.citizen_report r, day WHERE r.requested_at >= day.start
            GROUP BY r.service_code) s) AS by_item
"""


async def report_figures(conn: psycopg.AsyncConnection) -> dict:
    row = await (await conn.execute(FIGURES_SQL)).fetchone()
    return {"reports_today": row["reports_today"], "accepted_today": row["accepted_today"],
            "closed_today": row["closed_today"], "feedback_answers_30d": row["answers"],
            "satisfaction": round(float(row["satisfaction"]), 3) if row["satisfaction"] is not None else None,
            "items_today": [{"service_code": s.code, "service_name": s.name, "group": s.group,
                             "reports": row["by_item"].get(s.code, 0)} for s in SERVICES]}
