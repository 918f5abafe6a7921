"""The change-candidate review queue: which detections are queued, listing them, and decisions.

A candidate is not queued when it matches a registered building, an existing illegal-building
record, a candidate a reviewer already dismissed, or one still waiting in the queue: the next
flight over the same structure must not ask the same question again. "Matches" means the
overlap covers at least half of the candidate, or the two shapes' IoU is at least 0.3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import psycopg
from psycopg import sql

from gis.errors import Conflict, InvalidInput, NotFound
from gis.crs import STORAGE_SRID
from gis.keys import Principal

MIN_COVERED = 0.5
MIN_IOU = 0.3
STATUSES = ("pending", "confirmed", "dismissed")
Decision = Literal["confirm", "dismiss"]

CANDIDATE_COLUMNS = ("id, detection_id, district_code, score, area_m2, height_gain_m, checks_passed, before_id, after_id, "
                     "status, reviewer, note, decided_at, illegal_building_id, created_at")
# Why a candidate was not queued, tested in this order; each names the rows it is compared with.
REASONS: tuple[tuple[str, str, str], ...] = (
    ("dropped_registered", "city.building", "TRUE"),
    ("dropped_known_illegal", "city.illegal_building", "TRUE"),
    ("dropped_dismissed", "city.change_candidate", "o.status = 'dismissed'"),
    ("dropped_already_queued", "city.change_candidate", "o.status = 'pending'"),
)


@dataclass
class QueueCounts:
    candidates_found: int = 0
    candidates_queued: int = 0
    dropped_outside_city: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason, _, _ in REASONS})

    def as_columns(self) -> dict[str, int]:
        return {"candidates_found": self.candidates_found, "candidates_queued": self.candidates_queued,
                "dropped_outside_city": self.dropped_outside_city, **self.by_reason}


def _matches(table: str, condition: str) -> sql.Composed:
    """EXISTS (a row of `table` overlapping candidate c enough to be the same structure)."""
    schema, name = table.split(".")
    return sql.SQL(
        "EXISTS (SELECT 1 FROM {table} o WHERE o.geom && c.geom AND {condition} AND ST_Intersects(o.geom, c.geom) "
        "AND (ST_Area(ST_Intersection(o.geom, c.geom)) >= {covered} * ST_Area(c.geom) "
        "OR ST_Area(ST_Intersection(o.geom, c.geom)) >= {iou} * ST_Area(ST_Union(o.geom, c.geom))))"
    ).format(table=sql.Identifier(schema, name), condition=sql.SQL(condition),
             covered=sql.Literal(MIN_COVERED), iou=sql.Literal(MIN_IOU))


CLASSIFY_SQL = sql.SQL("""
WITH c AS (
    SELECT ord, ST_Multi(ST_MakeValid(ST_SetSRID(ST_GeomFromGeoJSON(g), {srid}))) AS geom, score, gain
    FROM unnest(%(geoms)s::text[], %(scores)s::real[], %(gains)s::real[]) WITH ORDINALITY AS t(g, score, gain, ord)
)
SELECT ord, ST_AsGeoJSON(geom) AS geom, score, gain,
    (SELECT d.code FROM city.district d WHERE ST_Contains(d.geom, ST_PointOnSurface(c.geom)) LIMIT 1) AS district_code,
    {reasons}
FROM c ORDER BY ord
""").format(srid=sql.Literal(STORAGE_SRID), reasons=sql.SQL(", ").join(
    sql.SQL("{} AS {}").format(_matches(table, condition), sql.Identifier(reason)) for reason, table, condition in REASONS))


def queue_candidates(conn: psycopg.Connection, detection: dict, candidates: list[dict]) -> QueueCounts:
    """Queue the candidates (GeoJSON geometry in EPSG:4490, score, height_gain_m, checks_passed) of one detection.

    Runs in the caller's transaction; returns what was queued and why the rest was dropped."""
    counts = QueueCounts(candidates_found=len(candidates))
    if not candidates:
        return counts
    rows = conn.execute(CLASSIFY_SQL, {
        "geoms": [json.dumps(c["geometry"]) for c in candidates],
        "scores": [c["score"] for c in candidates],
        "gains": [c["height_gain_m"] for c in candidates],
    }).fetchall()
    for row in rows:
        if row["district_code"] is None:
            counts.dropped_outside_city += 1
            continue
        reason = next((reason for reason, _, _ in REASONS if row[reason]), None)
        if reason:
            counts.by_reason[reason] += 1
            continue
        conn.execute(
            "INSERT INTO city.change_candidate (detection_id, district_code, score, height_gain_m, checks_passed, "
            "before_id, after_id, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, ST_SetSRID(ST_GeomFromGeoJSON(%s), "
            f"{STORAGE_SRID}))",
            [detection["id"], row["district_code"], row["score"], row["gain"],
             list(candidates[row["ord"] - 1].get("checks_passed", ())), detection["before_id"],
             detection["after_id"], row["geom"]])
        counts.candidates_queued += 1
    return counts


def list_candidates(conn: psycopg.Connection, *, status: str | None = "pending", detection_id: int | None = None,
                    district_code: str | None = None, limit: int = 1000) -> dict:
    """A GeoJSON FeatureCollection of candidates, best score first."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}; statuses are {', '.join(STATUSES)}")
    rows = conn.execute(
        f"SELECT {CANDIDATE_COLUMNS}, ST_AsGeoJSON(geom)::json AS geometry FROM city.change_candidate "
        "WHERE (%(status)s::text IS NULL OR status = %(status)s) "
        "AND (%(detection)s::bigint IS NULL OR detection_id = %(detection)s) "
        "AND (%(district)s::text IS NULL OR district_code = %(district)s) "
        "ORDER BY score DESC, id LIMIT %(limit)s",
        {"status": status, "detection": detection_id, "district": district_code, "limit": limit}).fetchall()
    return {"type": "FeatureCollection", "numberReturned": len(rows), "features": [_feature(r) for r in rows]}


def get_candidate(conn: psycopg.Connection, candidate_id: int) -> dict:
    row = conn.execute(f"SELECT {CANDIDATE_COLUMNS}, ST_AsGeoJSON(geom)::json AS geometry "
                       "FROM city.change_candidate WHERE id = %s", [candidate_id]).fetchone()
    if row is None:
        raise NotFound(f"no change candidate with id {candidate_id}")
    return _feature(row)


def decide(conn: psycopg.Connection, principal: Principal, candidate_id: int, decision: Decision,
           note: str | None) -> dict:
    """Confirm (creating the illegal-building record) or dismiss a pending candidate, in one transaction."""
    if decision not in ("confirm", "dismiss"):
        raise InvalidInput(f"decision must be confirm or dismiss, not {decision!r}")
    with conn.transaction():
        row = conn.execute("SELECT id, district_code, status, reviewer, decided_at FROM city.change_candidate "
                           "WHERE id = %s FOR UPDATE", [candidate_id]).fetchone()
        if row is None:
            raise NotFound(f"no change candidate with id {candidate_id}")
        principal.require_district(row["district_code"])
        if row["status"] != "pending":
            raise Conflict(f"candidate {candidate_id} was already {row['status']} by {row['reviewer']} "
                           f"at {row['decided_at']:%Y-%m-%d %H:%M}")
        record_id = None
        if decision == "confirm":
            record_id = conn.execute(
                "INSERT INTO city.illegal_building (district_code, status, found_by, confirmed_by, note, geom) "
                "SELECT district_code, 'confirmed', 'drone', %s, %s, geom FROM city.change_candidate WHERE id = %s "
                "RETURNING id", [principal.name, note, candidate_id]).fetchone()["id"]
        conn.execute("UPDATE city.change_candidate SET status = %s, reviewer = %s, note = %s, decided_at = now(), "
                     "illegal_building_id = %s WHERE id = %s",
                     ["confirmed" if decision == "confirm" else "dismissed", principal.name, note, record_id,
                      candidate_id])
    return get_candidate(conn, candidate_id)


def _feature(row: dict) -> dict:
    properties = {k: v for k, v in row.items() if k not in ("id", "geometry")}
    for key in ("decided_at", "created_at"):
        properties[key] = properties[key].isoformat() if properties[key] else None
    return {"type": "Feature", "id": row["id"], "geometry": row["geometry"], "properties": properties}
