"""What the wall shows: the layer catalogue (styles, legends, tile URLs) and the city's extent (its
orthophotos come from GET /orthophotos, api/routers/orthophotos.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import Connection
from api.extension import Extension
from gis.extent import city_frame
from layers.catalogue import Layer
from tiles.metadata import tiles_path

# Vector tiles in OGC order tileMatrix/tileRow/tileCol.
TILE_MATRIX_SET = "WebMercatorQuad"


def _layer_entry(layer: Layer, base: str) -> dict:
    return {
        **layer.model_dump(include={"id", "title", "description", "group", "geometry_type", "properties",
                                    "minzoom", "maxzoom", "lowzoom", "editable", "style", "legend", "key"}),
        "tables": list(layer.tables),
        "count_styles": layer.count_styles(),
        "tiles": [f"{base}{tiles_path(layer.id)}/{TILE_MATRIX_SET}/{{z}}/{{y}}/{{x}}"],
    }


def catalogue_extension() -> Extension:
    router = APIRouter(tags=["Command wall"])

    @router.get("/catalogue", summary="Published layers with style, legend and tile URL; the city's extent and district label points")
    async def catalogue(request: Request, conn: Connection):
        base = str(request.base_url).rstrip("/")
        frame = await city_frame(conn)
        return {
            "extent": {"bbox": frame["bbox"], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"},
            "districts": frame["districts"],
            "layers": [_layer_entry(layer, base) for layer in request.app.state.catalogue.layers],
        }

    return Extension(router=router, links=(
        {"rel": "data", "type": "application/json", "title": "Layer catalogue of the command wall", "href": "/catalogue"},
    ))
