"""Documents that describe raster tiles: OGC API collections with map tilesets, the tilesets
themselves, and TileJSON 3.0.0 (WebMercatorQuad only: TileJSON has no CRS, so its clients read
every tile grid as Web Mercator). Plain dicts; the API decides the URLs' base.

What GDAL's OGCAPI driver (and OpenLayers' OGCMapTile) need, and get here: one CRS84 `bbox` in
the collection's extent, a `tilesets-map` link, tilesets with `dataType: map` and a `self` link,
and in each tileset a `tiling-scheme` link, `rel=item` tile templates with literal
`{tileMatrix}/{tileRow}/{tileCol}` (never URL-encoded) and `tileMatrixSetLimits` for the zooms
that hold imagery.

GDAL before 3.7 (Debian 12's 3.6) parses the document behind the `tiling-scheme` link as a TMS 1.0
one only: it reads it at all only if the text holds "identifier", "boundingBox" and "tileMatrices",
then takes the CRS from `supportedCRS` and each level's `identifier` and `topLeftCorner`. TMS 2.0
readers need `crs`, `id` and `pointOfOrigin`, and morecantile refuses any document with TMS 1.0
keys. So the raster tilesets link to a document of their own carrying both versions' keys
(`tile_matrix_set_both_versions`), and `/tileMatrixSets/{id}` stays plain TMS 2.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from morecantile import TileMatrixSet

from tiles.matrix_sets import OGC_REGISTERED
from tiles.metadata import TILING_SCHEME_REL
from tiles.raster import FORMATS, RASTER_MATRIX_SETS

TILESETS_MAP_REL = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-map"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
FORMAT_TITLES = {"png": "PNG (transparent outside the imagery)", "jpg": "JPEG", "webp": "WebP (transparent)"}

Bounds = tuple[float, float, float, float]
GDAL_PICKS = "WorldCRS84Quad"  # GDAL's OGCAPI driver reads this tileset when offered


def map_tiles_path(collection_id: str) -> str:
    return f"/collections/{collection_id}/map/tiles"


def _query(params: dict[str, str] | None) -> str:
    return f"?{urlencode(params)}" if params else ""


def raster_collection(base: str, collection_id: str, title: str, description: str, bounds: Bounds,
                      interval: tuple[str | None, str | None] | None, extra_links: Sequence[dict] = ()) -> dict[str, Any]:
    href = f"{base}/collections/{collection_id}"
    document: dict[str, Any] = {
        "id": collection_id, "title": title, "description": description, "dataType": "map",
        "crs": [CRS84, *(tms.crs.srs for tms in RASTER_MATRIX_SETS.values())],
        "extent": {"spatial": {"bbox": [list(bounds)], "crs": CRS84}},
        "links": [
            {"rel": "self", "type": "application/json", "title": title, "href": href},
            {"rel": TILESETS_MAP_REL, "type": "application/json", "title": f"Map tilesets of {title}",
             "href": f"{base}{map_tiles_path(collection_id)}"},
            *extra_links,
        ],
    }
    if interval:
        document["extent"]["temporal"] = {"interval": [list(interval)],
                                          "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return document


def both_versions_href(base: str, tms: TileMatrixSet) -> str:
    return f"{base}/tileMatrixSets/{tms.id}/tms-1-and-2.json"


def tile_matrix_set_both_versions(tms: TileMatrixSet) -> dict[str, Any]:
    """The TMS 2.0 document of `tms` with TMS 1.0's keys added (same values, same CRS axis order)."""
    document = tms.model_dump(mode="json", exclude_none=True)
    crs = tms.crs.srs
    left, bottom, right, top = tms.xy_bbox
    axes_swapped = tms.crs._pyproj_crs.axis_info[0].direction in ("north", "south")  # corners in CRS axis order
    lower, upper = ([bottom, left], [top, right]) if axes_swapped else ([left, bottom], [right, top])
    document |= {"identifier": tms.id, "supportedCRS": crs,
                 "boundingBox": {"type": "BoundingBoxType", "crs": crs, "lowerCorner": lower, "upperCorner": upper}}
    for matrix in document["tileMatrices"]:
        matrix |= {"identifier": matrix["id"], "topLeftCorner": matrix["pointOfOrigin"]}
    return document


def tileset_href(base: str, collection_id: str, tms: TileMatrixSet) -> str:
    return f"{base}{map_tiles_path(collection_id)}/{tms.id}"


def map_tileset_summary(base: str, collection_id: str, title: str, tms: TileMatrixSet,
                        params: dict[str, str] | None = None) -> dict[str, Any]:
    href = tileset_href(base, collection_id, tms)
    return {
        "title": f"{title} ({tms.id})",
        "dataType": "map",
        "crs": tms.crs.srs,
        "tileMatrixSetURI": (f"http://www.opengis.net/def/tilematrixset/OGC/1.0/{tms.id}" if tms.id in OGC_REGISTERED
                             else f"{base}/tileMatrixSets/{tms.id}"),
        "links": [
            {"rel": "self", "type": "application/json", "title": "Tileset metadata", "href": href + _query(params)},
            {"rel": TILING_SCHEME_REL, "type": "application/json", "title": f"{tms.id} definition (TMS 1.0 and 2.0)",
             "href": both_versions_href(base, tms)},
        ],
    }


def map_tileset(base: str, collection_id: str, title: str, tms: TileMatrixSet, bounds: Bounds, zooms: tuple[int, int],
                params: dict[str, str] | None = None) -> dict[str, Any]:
    document = map_tileset_summary(base, collection_id, title, tms, params)
    href = tileset_href(base, collection_id, tms)
    query = _query(params)
    document["links"] += [
        {"rel": "item", "type": media, "title": f"Tiles ({FORMAT_TITLES[fmt]})", "templated": True,
         "href": f"{href}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}.{fmt}{query}"}
        for fmt, (_, media) in FORMATS.items()
    ]
    if tms.id == "WebMercatorQuad":
        document["links"].append({"rel": "describedby", "type": "application/json", "title": "TileJSON",
                                  "href": f"{href}/tilejson.json{query}"})
    document["boundingBox"] = {"lowerLeft": list(bounds[:2]), "upperRight": list(bounds[2:]), "crs": CRS84}
    document["tileMatrixSetLimits"] = tile_matrix_set_limits(tms, bounds, zooms)
    return document


def tile_matrix_set_limits(tms: TileMatrixSet, bounds: Bounds, zooms: tuple[int, int]) -> list[dict[str, Any]]:
    """The tiles holding imagery at each zoom. In WorldCRS84Quad, the matrix set GDAL's OGCAPI driver
    picks, the limits name the zooms only (each spans its whole matrix): GDAL 3.6 sizes a level by
    the whole matrix but places it by the limits' rows (a raster 20000 times too tall), and numbers
    its tile columns from the limits' first one as if it were column 0. The collection's bbox still
    crops its raster exactly."""
    limits = []
    for z in range(zooms[0], min(zooms[1], tms.maxzoom) + 1):
        if tms.id == GDAL_PICKS:
            matrix = tms.matrix(z)
            rows, cols = (0, matrix.matrixHeight - 1), (0, matrix.matrixWidth - 1)
        else:
            top_left = tms.tile(bounds[0], bounds[3], z, truncate=True)
            bottom_right = tms.tile(bounds[2], bounds[1], z, truncate=True)
            rows, cols = (top_left.y, bottom_right.y), (top_left.x, bottom_right.x)
        limits.append({"tileMatrix": str(z), "minTileRow": rows[0], "maxTileRow": rows[1],
                       "minTileCol": cols[0], "maxTileCol": cols[1]})
    return limits


def raster_tilejson(name: str, tile_template: str, bounds: Bounds, zooms: tuple[int, int]) -> dict[str, Any]:
    """`tile_template` with {z}/{x}/{y} and its extension, e.g. …/WebMercatorQuad/{z}/{x}/{y}.png."""
    minzoom, maxzoom = zooms
    return {
        "tilejson": "3.0.0", "name": name, "scheme": "xyz", "tiles": [tile_template],
        "minzoom": minzoom, "maxzoom": maxzoom, "bounds": list(bounds),
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, max(minzoom, min(maxzoom, minzoom + 4))],
    }
