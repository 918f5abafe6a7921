"""综合评价: per district, street, community or unit grid, the figures behind 干净/整洁/有序/安全/群众满意
that the case and alarm logs support, over a window of days: cases per km², the on-time rate of
handled cases, repeat cases (a second case of the same class within 50 m in the window), public
reports per km², and alarms per 100 instrumented covers. Each area also gets a class (1 best … 5
worst) by quintile of its cases per km², for a choropleth; the rows export as CSV."""

from __future__ import annotations

import csv
import io
from typing import Literal

import psycopg
from psycopg import sql

from gis.errors import InvalidInput

Level = Literal["district", "street", "community", "grid"]
LEVELS: dict[str, tuple[str, str, str]] = {  # level -> (table, code column, length of the code prefix in a bgcode)
    "district": ("district", "code", "6"),
    "street": ("street", "code", "9"),
    "community": ("community", "code", "12"),
    "grid": ("unit_grid", "bgcode", "15"),
}
REPEAT_DISTANCE_M = 50
CLASSES = 5

EVALUATION_SQL = """
WITH window_cases AS (
    SELECT c.id, left(c.bgcode, {prefix}) AS area, c.event_class_code, c.component_class_code, c.source,
           c.handled_at, c.deadline_at, c.reported_at, c.geom, c.geom_3857
    FROM city.case_file c
    WHERE c.reported_at >= now() - make_interval(days => %(days)s) AND c.state <> 'voided' AND c.bgcode IS NOT NULL
), repeats AS (  -- Web Mercator metres are 1/cos(latitude) true metres: the index answers, the scale corrects
    -- a probe of the spatial index per case (the OFFSET 0 fence keeps the time and class tests out of
    -- it): as one EXISTS the planner hashed the cases on their class, or ANDed the time index, and
    -- compared pairs by the ten thousand (16 s over 200 days, a hang over a year)
    SELECT a.id FROM window_cases a WHERE EXISTS (
        SELECT 1 FROM (SELECT b.id, b.reported_at, b.state, b.event_class_code, b.component_class_code
                       FROM city.case_file b
                       WHERE ST_DWithin(b.geom_3857, a.geom_3857, {repeat_m} / cos(radians(ST_Y(a.geom)))) OFFSET 0) b
        WHERE b.id <> a.id AND b.reported_at < a.reported_at AND b.state <> 'voided'
          AND b.reported_at >= now() - make_interval(days => %(days)s)
          AND coalesce(b.event_class_code, b.component_class_code) = coalesce(a.event_class_code, a.component_class_code))
), case_figures AS (
    SELECT area, count(*) AS cases, count(*) FILTER (WHERE source = 'public') AS public_reports,
           count(*) FILTER (WHERE handled_at IS NOT NULL AND deadline_at IS NOT NULL) AS handled,
           count(*) FILTER (WHERE handled_at <= deadline_at) AS on_time,
           count(*) FILTER (WHERE id IN (SELECT id FROM repeats)) AS repeat_cases
    FROM window_cases GROUP BY area
), alarm_figures AS (
    SELECT left(c.bgcode, {prefix}) AS area, count(*) AS alarms
    FROM city.alarm a JOIN city.component c USING (objcode)
    WHERE a.raised_at >= now() - make_interval(days => %(days)s) GROUP BY 1
), covers AS (
    SELECT left(c.bgcode, {prefix}) AS area, count(*) AS covers
    FROM city.manhole_sensor s JOIN city.component c USING (objcode) GROUP BY 1
), figures AS (
    SELECT t.{code} AS code, t.area_m2 / 1e6 AS area_km2, coalesce(f.cases, 0) AS cases,
           coalesce(f.public_reports, 0) AS public_reports, coalesce(f.handled, 0) AS handled,
           coalesce(f.on_time, 0) AS on_time, coalesce(f.repeat_cases, 0) AS repeat_cases,
           coalesce(a.alarms, 0) AS alarms, coalesce(v.covers, 0) AS covers, t.geom
    FROM city.{table} t
    LEFT JOIN case_figures f ON f.area = t.{code}
    LEFT JOIN alarm_figures a ON a.area = t.{code}
    LEFT JOIN covers v ON v.area = t.{code}
)
SELECT code, round(area_km2::numeric, 3) AS area_km2, cases, public_reports, repeat_cases, alarms, covers,
       round((cases / nullif(area_km2, 0))::numeric, 1) AS cases_per_km2,
       round((public_reports / nullif(area_km2, 0))::numeric, 1) AS public_reports_per_km2,
       round(100.0 * on_time / nullif(handled, 0), 1) AS on_time_percent,
       round(100.0 * repeat_cases / nullif(cases, 0), 1) AS repeat_percent,
       round(100.0 * alarms / nullif(covers, 0), 1) AS alarms_per_100_covers,
       ntile({classes}) OVER (ORDER BY cases / nullif(area_km2, 0) NULLS FIRST, code) AS class,  -- ties by code: the same class every time
       {geometry}
FROM figures ORDER BY code
"""

COLUMNS = ("code", "area_km2", "cases", "public_reports", "repeat_cases", "alarms", "covers", "cases_per_km2",
           "public_reports_per_km2", "on_time_percent", "repeat_percent", "alarms_per_100_covers", "class")


def evaluation_query(level: str, *, with_geometry: bool) -> sql.Composed:
    """The evaluation of one level's areas; takes %(days)s."""
    if level not in LEVELS:
        raise InvalidInput(f"unknown level {level!r}; levels are {', '.join(LEVELS)}")
    table, code, prefix = LEVELS[level]
    return sql.SQL(EVALUATION_SQL).format(
        prefix=sql.SQL(prefix), repeat_m=sql.Literal(REPEAT_DISTANCE_M), classes=sql.Literal(CLASSES),
        table=sql.Identifier(table), code=sql.Identifier(code),
        geometry=sql.SQL("ST_AsGeoJSON(geom, 6)::json AS geometry" if with_geometry else "NULL AS geometry"))


async def evaluate(conn: psycopg.AsyncConnection, level: str, days: int, *, with_geometry: bool) -> list[dict]:
    query = evaluation_query(level, with_geometry=with_geometry)
    if not 1 <= days <= 366:
        raise InvalidInput("days must be between 1 and 366")
    return await (await conn.execute(query, {"days": days})).fetchall()


def as_features(rows: list[dict], level: str, days: int) -> dict:
    return {"type": "FeatureCollection", "level": level, "days": days, "classes": CLASSES,
            "features": [{"type": "Feature", "id": r["code"], "geometry": r["geometry"],
                          "properties": {k: (float(r[k]) if r[k] is not None and k not in ("code", "class") and not isinstance(r[k], int) else r[k])
                                         for k in COLUMNS}} for r in rows]}


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r[k] for k in COLUMNS])
    return out.getvalue()
