"""Query parameters of the OGC API Features operations, as pydantic models: one items model per
collection (the common parameters plus one equality filter per published property), so the
OpenAPI document lists exactly what each collection accepts and anything else is a 400.

The items route serves every layer of the live catalogue, those published at run time too, so it
validates the query string against the resolved layer's model itself (`parse_items_params`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from gis.crs import CRS84_URI
from layers.catalogue import Layer

PAGE_MAX_LIMIT = 10_000  # GeoJSON and HTML pages are built whole
STREAM_MAX_LIMIT = 1_000_000  # GeoJSON-seq and CSV stream in constant memory
# Clients that read nothing but the default page through a whole collection (GDAL 3.6 asked for
# 10 a page: 85 s for the unit grids instead of 2 s); a 1,000-feature page is ~0.5 MB of GeoJSON.
DEFAULT_LIMIT = 1_000

Format = Literal["json", "geojson", "html", "csv", "jsonseq"]


class FeatureParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    f: Format = Field(None, description="output format; default from the Accept header, else GeoJSON")
    crs: str = Field(None, description=f"CRS of the geometries in the response (default {CRS84_URI}); "
                                       "see the collection's `crs` list")


class ItemsParams(FeatureParams):
    limit: int = Field(DEFAULT_LIMIT, ge=1, json_schema_extra={"maximum": PAGE_MAX_LIMIT}, description=(
        f"features per page: at most {PAGE_MAX_LIMIT:,} for GeoJSON and HTML, "
        f"{STREAM_MAX_LIMIT:,} for the streamed formats f=jsonseq and f=csv"))
    offset: int = Field(0, ge=0, description="features to skip; `next` links carry a cursor instead")
    cursor: str = Field(None, max_length=4096, description=(
        "where a `next` link continues (opaque, signed over the query: valid only with the same collection, "
        "filter, bbox, datetime and sortby)"))
    bbox: str = Field(None, description="minx,miny,maxx,maxy (or 6 numbers with heights) in bbox-crs axis order")
    bbox_crs: str = Field(None, alias="bbox-crs", description=f"CRS of bbox (default {CRS84_URI})")
    datetime: str = Field(None, description="RFC 3339 instant or interval (`a/b`, `../b`, `a/..`) "
                                            "on the collection's temporal property")
    filter: str = Field(None, description="CQL2 expression selecting features (see /queryables)")
    filter_lang: Literal["cql2-text", "cql2-json"] = Field(None, alias="filter-lang", description="default cql2-text")
    filter_crs: str = Field(None, alias="filter-crs", description=f"CRS of geometries in filter (default {CRS84_URI})")
    sortby: str = Field(None, description="comma-separated properties, `-` before one for descending, e.g. +name,-area_m2")
    properties: str = Field(None, description="comma-separated properties to return (default all)")


RESERVED = set(ItemsParams.model_fields) | {"bbox-crs", "filter-lang", "filter-crs"}


def items_params_model(layer: Layer) -> type[ItemsParams]:
    """ItemsParams plus `?<property>=<value>` equality filters for this layer."""
    return _items_params_model(layer.id, (layer.key, *layer.properties))


@lru_cache(maxsize=256)
def _items_params_model(layer_id: str, columns: tuple[str, ...]) -> type[ItemsParams]:
    equality = {
        name: (str, Field(None, description=f"only features whose {name} equals this value"))
        for name in dict.fromkeys(columns) if name not in RESERVED
    }
    return create_model(f"{layer_id.title().replace('_', '')}ItemsParams", __base__=ItemsParams, **equality)


def parse_items_params(layer: Layer, query: Mapping[str, str]) -> ItemsParams:
    """The query string as this layer's items parameters (a 400 naming what is wrong)."""
    try:
        return items_params_model(layer).model_validate(dict(query))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


def items_openapi_parameters(layer: Layer) -> list[dict]:
    """The OpenAPI query parameters of this layer's items operation."""
    schema = items_params_model(layer).model_json_schema(by_alias=True)
    parameters = []
    for name, field in schema["properties"].items():
        field = dict(field)
        description = field.pop("description", "")
        field.pop("title", None)
        field.pop("default", None)
        if "anyOf" in field:  # `X | None` fields: the parameter is optional anyway
            field = next((s for s in field["anyOf"] if s.get("type") != "null"), {"type": "string"})
        parameters.append({"name": name, "in": "query", "required": False, "description": description, "schema": field})
    return parameters


def equality_filters(params: ItemsParams) -> dict[str, str]:
    return {name: value for name, value in params.model_dump(exclude=set(ItemsParams.model_fields)).items()
            if value is not None}

