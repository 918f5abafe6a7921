"""Documents that describe the tiles: OGC API – Tiles tilesets, TileJSON 3.0.0 and a MapLibre style,
all derived from the catalogue (plain dicts; the API decides the URLs' base)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from morecantile import TileMatrixSet

from gis.cql import Queryable
from gis.errors import NotFound
from layers.catalogue import Layer
from tiles.matrix_sets import OGC_REGISTERED

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
TILING_SCHEME_REL = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
TILESETS_VECTOR_REL = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
TILE_TEMPLATE = "{tileMatrix}/{tileRow}/{tileCol}"
SOURCE_ID = "cityops"
TILEJSON_TMS = "WebMercatorQuad"

Bounds = tuple[float, float, float, float]
WORLD: Bounds = (-180.0, -85.05, 180.0, 85.05)


async def city_bounds(conn: psycopg.AsyncConnection) -> Bounds | None:
    """The extent of the city's districts in degrees, or None when no city is loaded."""
    row = await (await conn.execute(
        "SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n "
        "FROM (SELECT ST_Extent(geom) AS e FROM city.district) x")).fetchone()
    return None if row["w"] is None else (row["w"], row["s"], row["e"], row["n"])


def tiles_path(collection_id: str | None) -> str:
    """The path of a collection's tilesets, or of the dataset's."""
    return f"/collections/{collection_id}/tiles" if collection_id else "/tiles"


def layer_zooms(layer: Layer) -> tuple[int, int]:
    """The zooms at which a layer's tiles hold something (features, or counts below minzoom)."""
    return (0 if layer.lowzoom else layer.minzoom), layer.maxzoom


def tileset_summary(base: str, tms: TileMatrixSet, title: str, collection_id: str | None) -> dict[str, Any]:
    href = f"{base}{tiles_path(collection_id)}/{tms.id}"
    return {
        "title": f"{title} ({tms.id})",
        "dataType": "vector",
        "crs": tms.crs.srs,
        "tileMatrixSetURI": f"http://www.opengis.net/def/tilematrixset/OGC/1.0/{tms.id}" if tms.id in OGC_REGISTERED else f"{base}/tileMatrixSets/{tms.id}",
        "links": [
            {"rel": "self", "type": "application/json", "title": "Tileset metadata", "href": href},
            {"rel": TILING_SCHEME_REL, "type": "application/json", "title": f"{tms.id} definition", "href": f"{base}/tileMatrixSets/{tms.id}"},
        ],
    }


def tileset(base: str, tms: TileMatrixSet, title: str, layers: Sequence[Layer], collection_id: str | None,
            queryables: Mapping[str, Mapping[str, Queryable]]) -> dict[str, Any]:
    document = tileset_summary(base, tms, title, collection_id)
    href = f"{base}{tiles_path(collection_id)}/{tms.id}"
    document["links"].append(
        {"rel": "item", "type": MVT_MEDIA_TYPE, "title": "Tiles (Mapbox Vector Tile)", "templated": True, "href": f"{href}/{TILE_TEMPLATE}"})
    if tms.id == TILEJSON_TMS:
        document["links"].append({"rel": "describedby", "type": "application/json", "title": "TileJSON", "href": f"{href}/tilejson.json"})
    document["layers"] = [
        {
            "id": layer.id, "title": layer.title, "description": layer.description or layer.legend, "dataType": "vector",
            "geometryDimension": {"Point": 0, "LineString": 1}.get(layer.geometry_type, 2 if layer.geometry_type != "Geometry" else None),
            "minTileMatrix": str(layer_zooms(layer)[0]), "maxTileMatrix": str(min(layer.maxzoom, tms.maxzoom)),
            "propertiesSchema": {"type": "object", "properties": {
                name: {"type": _schema_type(q.type)} for name, q in queryables.get(layer.id, {}).items() if q.type != "geometry"}},
        }
        for layer in layers
    ]
    for entry in document["layers"]:
        if entry["geometryDimension"] is None:
            del entry["geometryDimension"]
    return document


def _zoom_range(layers: Sequence[Layer], tms: TileMatrixSet) -> tuple[int, int]:
    zooms = [layer_zooms(layer) for layer in layers] or [(0, 0)]
    return min(z[0] for z in zooms), min(max(z[1] for z in zooms), tms.maxzoom)


def _schema_type(kind: str) -> str:
    return {"datetime": "string", "date": "string"}.get(kind, kind)


def _field_type(kind: str) -> str:
    """TileJSON leaves field descriptions free; GDAL and tippecanoe read these three words as types."""
    return {"integer": "Number", "number": "Number", "boolean": "Boolean"}.get(kind, "String")


def tilejson(base: str, tms: TileMatrixSet, name: str, layers: Sequence[Layer], collection_id: str | None,
             queryables: Mapping[str, Mapping[str, Queryable]], bounds: Bounds) -> dict[str, Any]:
    if tms.id != TILEJSON_TMS:
        # TileJSON has no CRS: every client reads its tiles as Web Mercator ones
        raise NotFound(f"TileJSON describes {TILEJSON_TMS} tiles only; {tms.id} tiles are described by their "
                       f"tileset metadata at {base}{tiles_path(collection_id)}/{tms.id}")
    minzoom, maxzoom = _zoom_range(layers, tms)
    return {
        "tilejson": "3.0.0",
        "name": name,
        "scheme": "xyz",
        "tiles": [f"{base}{tiles_path(collection_id)}/{tms.id}/{{z}}/{{y}}/{{x}}"],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": list(bounds),
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, max(minzoom, 10)],
        "vector_layers": [
            {
                "id": layer.id, "description": layer.title, "minzoom": layer_zooms(layer)[0], "maxzoom": min(layer.maxzoom, tms.maxzoom),
                "fields": {
                    **{n: _field_type(q.type) for n, q in queryables.get(layer.id, {}).items() if q.type != "geometry"},
                    **({"count": "Number"} if layer.lowzoom else {}),
                },
            }
            for layer in layers
        ],
    }


def style(base: str, tms: TileMatrixSet, layers: Sequence[Layer], bounds: Bounds) -> dict[str, Any]:
    """A MapLibre style (spec v8) drawing every layer with its catalogue style; layers with a
    `lowzoom` get their count circles below minzoom (`Layer.count_styles`)."""
    minzoom, maxzoom = _zoom_range(layers, tms)
    style_layers: list[dict[str, Any]] = [{"id": "background", "type": "background", "paint": {"background-color": "#0b1726"}}]
    for layer in layers:
        common = {"source": SOURCE_ID, "source-layer": layer.id, "metadata": {"cityops:group": layer.group, "cityops:legend": layer.legend}}
        style_layers += [{**count_style, **common} for count_style in layer.count_styles()]
        entry = {"id": layer.id, **common, **layer.style}
        if layer.minzoom > 0:
            entry["minzoom"] = layer.minzoom
        style_layers.append(entry)
    return {
        "version": 8,
        "name": "cityops default",
        "metadata": {"cityops:tileMatrixSet": tms.id},
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2],
        "zoom": 10,
        # The tile URL itself, not a TileJSON `url`: QGIS 3.22 cannot follow one.
        "sources": {SOURCE_ID: {"type": "vector", "tiles": [f"{base}{tiles_path(None)}/{tms.id}/{{z}}/{{y}}/{{x}}"],
                                "minzoom": minzoom, "maxzoom": maxzoom, "bounds": list(bounds)}},
        "layers": style_layers,
    }

