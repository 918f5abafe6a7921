"""The orthophoto catalogue (`city.orthophoto`): the one module that reads and writes it.

Drone ingest and detection jobs, raster tiles, the API and the CLI all come here for rows, the
files the platform wrote (the analysis COG and the display COG) and footprints; no other module
holds this table's SQL. Every write fires the change triggers of migration 0004/0012, so cached
raster tiles of a replaced or deleted orthophoto are dropped in every process.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import psycopg

from gis.crs import STORAGE_SRID
from gis.errors import Conflict, NotFound
from gis.settings import Settings

KINDS = ("rgb", "dsm", "change")
# the collection id of the latest-imagery mosaic, which no published vector layer may take
MOSAIC_COLLECTION_ID = "imagery"
# What a client may see; file paths stay on the server.
PUBLIC_COLUMNS = ("id, name, kind, captured_on, gsd_m, width, height, band_count, source_crs, file_bytes, "
                  "display_bytes, display_minzoom, display_maxzoom, display_min, display_max, created_at, "
                  "ST_AsGeoJSON(geom, 9, 0)::json AS footprint, "
                  "array[ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom)] AS bbox")
COLUMNS = PUBLIC_COLUMNS + ", file_path, display_path"
# The day a flight shows the city as it was: its capture date, else the day it was catalogued.
FLIGHT_DAY = "coalesce(captured_on, (created_at AT TIME ZONE 'Asia/Shanghai')::date)"


def managed_dir(settings: Settings) -> Path:
    """Where the platform keeps orthophoto files; uploads and renditions are staged in `.staging`."""
    return settings.state_dir / "orthophotos"


def staging_dir(settings: Settings) -> Path:
    folder = managed_dir(settings) / ".staging"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def insert(conn: psycopg.Connection, *, name: str, kind: str, captured_on: date | None, gsd_m: float, width: int,
           height: int, band_count: int, source_crs: str, footprint: dict, file_path: Path, file_bytes: int,
           display_range: tuple[float | None, float | None], display: dict | None) -> dict:
    """Catalogue a new orthophoto; `display` holds display_path, display_bytes, display_minzoom, display_maxzoom."""
    display = display or dict.fromkeys(("display_path", "display_bytes", "display_minzoom", "display_maxzoom"))
    return conn.execute(
        f"INSERT INTO city.orthophoto (name, kind, captured_on, gsd_m, width, height, band_count, source_crs, "
        f"file_path, file_bytes, display_min, display_max, display_path, display_bytes, display_minzoom, "
        f"display_maxzoom, geom) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        f"ST_SetSRID(ST_GeomFromGeoJSON(%s), {STORAGE_SRID})) RETURNING {COLUMNS}",
        [name, kind, captured_on, gsd_m, width, height, band_count, source_crs, str(file_path), file_bytes,
         *display_range, _text(display["display_path"]), display["display_bytes"], display["display_minzoom"],
         display["display_maxzoom"], json.dumps(footprint)],
    ).fetchone()


def set_display(conn: psycopg.Connection, orthophoto_id: int, display: dict) -> dict:
    """Point an orthophoto at a new display rendition; returns the row as it was before (its old files)."""
    old = get(conn, orthophoto_id, lock=True)
    conn.execute("UPDATE city.orthophoto SET display_path = %s, display_bytes = %s, display_minzoom = %s, "
                 "display_maxzoom = %s WHERE id = %s",
                 [_text(display["display_path"]), display["display_bytes"], display["display_minzoom"],
                  display["display_maxzoom"], orthophoto_id])
    return old


def replace_image(conn: psycopg.Connection, orthophoto_id: int, *, gsd_m: float, width: int, height: int,
                  band_count: int, source_crs: str, footprint: dict, file_path: Path, file_bytes: int,
                  display_range: tuple[float | None, float | None], display: dict) -> tuple[dict, dict]:
    """Replace an orthophoto's image (same id, name, kind and date); returns (old row, new row)."""
    old = get(conn, orthophoto_id, lock=True)
    new = conn.execute(
        f"UPDATE city.orthophoto SET gsd_m = %s, width = %s, height = %s, band_count = %s, source_crs = %s, "
        f"file_path = %s, file_bytes = %s, display_min = %s, display_max = %s, display_path = %s, "
        f"display_bytes = %s, display_minzoom = %s, display_maxzoom = %s, "
        f"geom = ST_SetSRID(ST_GeomFromGeoJSON(%s), {STORAGE_SRID}) WHERE id = %s RETURNING {COLUMNS}",
        [gsd_m, width, height, band_count, source_crs, str(file_path), file_bytes, *display_range,
         _text(display["display_path"]), display["display_bytes"], display["display_minzoom"],
         display["display_maxzoom"], json.dumps(footprint), orthophoto_id],
    ).fetchone()
    return old, new


def delete(conn: psycopg.Connection, orthophoto_id: int) -> dict:
    """Remove an orthophoto from the catalogue; returns its row so the caller removes its files after
    the commit. Refused while a detection job or a candidate refers to it."""
    row = get(conn, orthophoto_id, lock=True)
    users = conn.execute(
        "SELECT array_agg(id ORDER BY id) AS ids FROM city.drone_detection "
        "WHERE %(id)s IN (before_id, after_id, before_dsm_id, after_dsm_id, change_map_id)",
        {"id": orthophoto_id}).fetchone()["ids"]
    if users:
        raise Conflict(f"orthophoto {orthophoto_id} is used by change-detection job(s) "
                       f"{', '.join(map(str, users))}; it stays as their evidence")
    conn.execute("DELETE FROM city.orthophoto WHERE id = %s", [orthophoto_id])
    return row


def get(conn: psycopg.Connection, orthophoto_id: int, *, lock: bool = False) -> dict:
    row = conn.execute(f"SELECT {COLUMNS} FROM city.orthophoto WHERE id = %s{' FOR UPDATE' if lock else ''}",
                       [orthophoto_id]).fetchone()
    if row is None:
        raise NotFound(f"no orthophoto with id {orthophoto_id}; see GET /orthophotos")
    return row


def find(conn: psycopg.Connection, ids: list[int]) -> dict[int, dict]:
    """The rows of those ids that exist, by id."""
    return {row["id"]: row for row in conn.execute(f"SELECT {COLUMNS} FROM city.orthophoto WHERE id = ANY(%s)",
                                                   [ids])}


def listing(conn: psycopg.Connection, kind: str | None = None) -> list[dict]:
    """Every orthophoto (of one kind), newest flight first."""
    return conn.execute(f"SELECT {COLUMNS} FROM city.orthophoto WHERE %(kind)s::text IS NULL OR kind = %(kind)s "
                        f"ORDER BY {FLIGHT_DAY} DESC, id DESC", {"kind": kind}).fetchall()


def overlap(conn: psycopg.Connection, first_id: int, second_id: int) -> bool:
    row = conn.execute("SELECT ST_Intersects(a.geom, b.geom) AS overlap FROM city.orthophoto a, city.orthophoto b "
                       "WHERE a.id = %s AND b.id = %s", [first_id, second_id]).fetchone()
    return bool(row and row["overlap"])


def flight_day(conn: psycopg.Connection, orthophoto_id: int) -> date:
    return conn.execute(f"SELECT {FLIGHT_DAY} AS day FROM city.orthophoto WHERE id = %s",
                        [orthophoto_id]).fetchone()["day"]


# -- reads for tiles (async pool) ------------------------------------------------------------------

TILE_COLUMNS = ("id, kind, band_count, display_min, display_max, coalesce(display_path, file_path) AS path, "
                "display_path IS NOT NULL AS web_aligned, display_minzoom, display_maxzoom, "
                f"{FLIGHT_DAY} AS flight_day, "
                "array[ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom)] AS bbox")


async def tile_source(conn: psycopg.AsyncConnection, orthophoto_id: int) -> dict:
    """What a tile of one orthophoto is read from: its display COG (the analysis COG until it has one)."""
    row = await (await conn.execute(f"SELECT {TILE_COLUMNS} FROM city.orthophoto WHERE id = %s",
                                    [orthophoto_id])).fetchone()
    if row is None:
        raise NotFound(f"no orthophoto with id {orthophoto_id}; see GET /orthophotos")
    return row


async def mosaic_flights(conn: psycopg.AsyncConnection) -> list[dict]:
    """Every RGB orthophoto with its footprint (WKB, EPSG:4490), newest flight first: the order the
    mosaic stacks them in (tiles.raster keeps them in memory until the catalogue changes)."""
    return await (await conn.execute(
        f"SELECT {TILE_COLUMNS}, ST_AsBinary(geom) AS footprint_wkb FROM city.orthophoto WHERE kind = 'rgb' "
        f"ORDER BY {FLIGHT_DAY} DESC, id DESC")).fetchall()


async def mosaic_summary(conn: psycopg.AsyncConnection, on_day: date | None) -> dict:
    """Extent, zooms and flight days of the RGB orthophotos flown on or before `on_day`."""
    return await (await conn.execute(
        f"SELECT count(*) AS flights, min({FLIGHT_DAY}) AS first_day, max({FLIGHT_DAY}) AS last_day, "
        f"min(display_minzoom) AS minzoom, max(display_maxzoom) AS maxzoom, "
        f"array[ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), ST_XMax(ST_Extent(geom)), "
        f"ST_YMax(ST_Extent(geom))] AS bbox FROM city.orthophoto WHERE kind = 'rgb' "
        f"AND (%(day)s::date IS NULL OR {FLIGHT_DAY} <= %(day)s)", {"day": on_day})).fetchone()


async def first_flight_day(conn: psycopg.AsyncConnection) -> date | None:
    return (await (await conn.execute(
        f"SELECT min({FLIGHT_DAY}) AS day FROM city.orthophoto WHERE kind = 'rgb'")).fetchone())["day"]


async def public_listing(conn: psycopg.AsyncConnection) -> list[dict]:
    """Every orthophoto without its file paths, newest flight first (for collection documents)."""
    return await (await conn.execute(f"SELECT {PUBLIC_COLUMNS} FROM city.orthophoto "
                                     f"ORDER BY {FLIGHT_DAY} DESC, id DESC")).fetchall()


async def public_entry(conn: psycopg.AsyncConnection, orthophoto_id: int) -> dict:
    row = await (await conn.execute(f"SELECT {PUBLIC_COLUMNS}, file_path FROM city.orthophoto WHERE id = %s",
                                    [orthophoto_id])).fetchone()
    if row is None:
        raise NotFound(f"no orthophoto with id {orthophoto_id}; see GET /orthophotos")
    return row


def _text(path: Path | str | None) -> str | None:
    return None if path is None else str(path)
