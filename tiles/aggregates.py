"""Registers the catalogue's `count_per_grid` layers with the database, which keeps their per-grid
counts current (migration 0004); a new or changed layer is counted in full once."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import psycopg

from layers.catalogue import Layer

REGISTERED_SQL = "SELECT layer_id, relation, where_sql, tables FROM city.grid_count_layer"
UPSERT_SQL = (
    "INSERT INTO city.grid_count_layer (layer_id, relation, where_sql, tables) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (layer_id) DO UPDATE SET relation = EXCLUDED.relation, where_sql = EXCLUDED.where_sql, tables = EXCLUDED.tables"
)
# Several workers start at once: one registers, the others then find nothing to do.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('cityops.grid_count_layer'))"

log = logging.getLogger("cityops.tiles")


async def register_grid_counts(conn: psycopg.AsyncConnection, layers: Iterable[Layer]) -> None:
    wanted = {layer.id: (layer.relation, layer.where, list(layer.tables))
              for layer in layers if layer.lowzoom == "count_per_grid"}
    async with conn.transaction():
        await conn.execute(LOCK_SQL)
        current = {row["layer_id"]: (row["relation"], row["where_sql"], row["tables"])
                   for row in await (await conn.execute(REGISTERED_SQL)).fetchall()}
        for layer_id in current.keys() - wanted.keys():
            await conn.execute("DELETE FROM city.grid_count_layer WHERE layer_id = %s", [layer_id])
        for layer_id, definition in wanted.items():
            if current.get(layer_id) == definition:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(UPSERT_SQL, [layer_id, *definition])
                    await conn.execute("SELECT city.recount_grids(%s, NULL)", [layer_id])
            except psycopg.errors.UndefinedColumn as exc:
                log.error("layer %r cannot be counted per unit grid (%s); its low zooms stay empty",
                          layer_id, exc.diag.message_primary)
