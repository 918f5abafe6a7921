"""Tile archives for a CDN or an offline laptop: PMTiles v3 (the `pmtiles` package) and MBTiles 1.3
(SQLite), holding gzip-compressed MVT with the TileJSON-style `vector_layers` metadata, or raster
tiles (PNG, JPEG, WebP) as they are."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from morecantile import Tile
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

ArchiveFormat = Literal["pmtiles", "mbtiles"]
TileFormat = Literal["mvt", "png", "jpg", "webp"]
PMTILES_TYPES = {"mvt": TileType.MVT, "png": TileType.PNG, "jpg": TileType.JPEG, "webp": TileType.WEBP}
MBTILES_FORMATS = {"mvt": "pbf", "png": "png", "jpg": "jpg", "webp": "webp"}


def write_archive(path: Path, fmt: ArchiveFormat, tiles: Iterable[tuple[Tile, bytes]], metadata: dict[str, Any],
                  tile_format: TileFormat = "mvt") -> int:
    """Writes the non-empty tiles; returns how many. `metadata` is a TileJSON document."""
    if fmt == "pmtiles":
        return _write_pmtiles(path, tiles, metadata, tile_format)
    return _write_mbtiles(path, tiles, metadata, tile_format)


def _stored(data: bytes, tile_format: TileFormat) -> bytes:
    return gzip.compress(data) if tile_format == "mvt" else data  # images are compressed already


def _write_pmtiles(path: Path, tiles: Iterable[tuple[Tile, bytes]], metadata: dict[str, Any],
                   tile_format: TileFormat) -> int:
    # PMTiles wants tiles in tile-id order for a clustered archive; keep them compressed in memory.
    entries = sorted((zxy_to_tileid(t.z, t.x, t.y), _stored(data, tile_format)) for t, data in tiles if data)
    west, south, east, north = metadata["bounds"]
    with open(path, "wb") as f:
        writer = Writer(f)
        for tile_id, data in entries:
            writer.write_tile(tile_id, data)
        writer.finalize(
            {
                "tile_type": PMTILES_TYPES[tile_format],
                "tile_compression": Compression.GZIP if tile_format == "mvt" else Compression.NONE,
                "min_zoom": metadata["minzoom"], "max_zoom": metadata["maxzoom"],
                "min_lon_e7": int(west * 1e7), "min_lat_e7": int(south * 1e7),
                "max_lon_e7": int(east * 1e7), "max_lat_e7": int(north * 1e7),
                "center_zoom": metadata["center"][2],
                "center_lon_e7": int(metadata["center"][0] * 1e7), "center_lat_e7": int(metadata["center"][1] * 1e7),
            },
            {"name": metadata["name"], **({"vector_layers": metadata["vector_layers"]} if tile_format == "mvt" else {})},
        )
    return len(entries)


def _write_mbtiles(path: Path, tiles: Iterable[tuple[Tile, bytes]], metadata: dict[str, Any],
                   tile_format: TileFormat) -> int:
    path.unlink(missing_ok=True)
    written = 0
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name text, value text)")
        db.execute("CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob)")
        db.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
        for tile, data in tiles:
            if data:
                # MBTiles rows count from the south (TMS), XYZ rows from the north.
                db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (tile.z, tile.x, (1 << tile.z) - 1 - tile.y, _stored(data, tile_format)))
                written += 1
        db.executemany("INSERT INTO metadata VALUES (?, ?)", [
            ("name", metadata["name"]), ("format", MBTILES_FORMATS[tile_format]),
            ("type", "overlay" if tile_format == "mvt" else "baselayer"), ("version", "1.3"),
            ("minzoom", str(metadata["minzoom"])), ("maxzoom", str(metadata["maxzoom"])),
            ("bounds", ",".join(str(v) for v in metadata["bounds"])),
            ("center", ",".join(str(v) for v in metadata["center"])),
        ])
        if tile_format == "mvt":
            db.execute("INSERT INTO metadata VALUES (?, ?)",
                       ("json", json.dumps({"vector_layers": metadata["vector_layers"]}, ensure_ascii=False)))
    return written
