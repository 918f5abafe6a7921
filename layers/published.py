"""Layers published at run time: rows of `city.published_layer` read as catalogue `Layer`s."""

from __future__ import annotations

import logging

import psycopg
from pydantic import ValidationError

from gis.orthophotos import MOSAIC_COLLECTION_ID
from layers.catalogue import Layer

_COLUMNS = (
    'SELECT id, title, description, "group", relation, key, geometry_type, properties, "where", source_tables, '
    "datetime_column, district_column, minzoom, maxzoom, lowzoom, linework_below, tile_feature_budget, editable, style, legend "
    "FROM city.published_layer "
)
PUBLISHED_SQL = _COLUMNS + "ORDER BY id"
PUBLISHED_ONE_SQL = _COLUMNS + "WHERE id = %s"

log = logging.getLogger("cityops.layers")


def layer_from_row(row: dict) -> Layer:
    return Layer(**{**row, "properties": tuple(row["properties"]), "source_tables": tuple(row["source_tables"])})


async def load_published(conn: psycopg.AsyncConnection) -> list[Layer]:
    """The valid published layers; a row that does not make a valid Layer is logged and left out."""
    layers = []
    for row in await (await conn.execute(PUBLISHED_SQL)).fetchall():
        if row["id"] == MOSAIC_COLLECTION_ID:
            log.error("published layer %r is not served: the latest-imagery collection has that id", row["id"])
            continue
        try:
            layers.append(layer_from_row(row))
        except ValidationError as exc:
            log.error("published layer %r is not a valid layer and is not served: %s", row["id"], exc)
    return layers
