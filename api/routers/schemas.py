"""The schema of each collection's features, up front, so that clients type their columns before
reading a feature: as JSON Schema (OGC API Features Part 5 `schema`) and as a GML application
schema (XSD), linked as `describedBy`. GDAL reads the XSD both in its OAPIF driver (3.6 and
later) and in its OGCAPI driver for vector tiles, which otherwise guesses the fields from a few
sampled tiles and, on an empty or count-only tile, builds a layer without attributes."""

from __future__ import annotations

from typing import Annotated, Literal
from xml.etree import ElementTree

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from api.extension import Extension
from layers.catalogue import Layer
from layers.features import JSON_SCHEMA_TYPES

SCHEMA_MEDIA_TYPE = "application/schema+json"
SCHEMA_REL = "http://www.opengis.net/def/rel/ogc/1.0/schema"
XSD_MEDIA_TYPE = "text/xml"
XS = "http://www.w3.org/2001/XMLSchema"
GML = "http://www.opengis.net/gml/3.2"
TARGET_NAMESPACE = "https://cityops.example/ogcapi/features"
XSD_TYPES = {"string": "xs:string", "integer": "xs:long", "number": "xs:double", "boolean": "xs:boolean",
             "datetime": "xs:dateTime", "date": "xs:date"}
GML_GEOMETRY_TYPES = {"Point": "gml:PointPropertyType", "LineString": "gml:CurvePropertyType",
                      "Polygon": "gml:SurfacePropertyType", "MultiPolygon": "gml:MultiSurfacePropertyType",
                      "Geometry": "gml:GeometryPropertyType"}
GEOJSON_GEOMETRY_TYPES = {"MultiPolygon": ["MultiPolygon", "Polygon"], "Polygon": ["Polygon"], "Point": ["Point"],
                          "LineString": ["LineString", "MultiLineString"]}


def schema_links(layer: Layer, base_url: str) -> list[dict]:
    href = f"{base_url.rstrip('/')}/collections/{layer.id}/schema"
    # GDAL looks for rel="describedBy" spelled exactly so (RFC 8288: rels are case-insensitive)
    return [{"rel": "describedBy", "type": XSD_MEDIA_TYPE, "title": "GML application schema of the features",
             "href": f"{href}?f=xsd"},
            {"rel": "describedBy", "type": SCHEMA_MEDIA_TYPE, "title": "JSON Schema of the features", "href": href},
            {"rel": SCHEMA_REL, "type": SCHEMA_MEDIA_TYPE, "title": "JSON Schema of the features", "href": href}]


def application_schema(layer: Layer, queryables: dict) -> bytes:
    """The GML 3.2 application schema of one feature type: its geometry and typed properties."""
    ElementTree.register_namespace("xs", XS)
    # gml: and cityops: appear only inside attribute values, so ElementTree would not declare them
    root = ElementTree.Element(f"{{{XS}}}schema", {"xmlns:gml": GML, "xmlns:cityops": TARGET_NAMESPACE,
                                                   "targetNamespace": TARGET_NAMESPACE,
                                                   "elementFormDefault": "qualified", "version": "1.0"})
    ElementTree.SubElement(root, f"{{{XS}}}import", {"namespace": GML})
    ElementTree.SubElement(root, f"{{{XS}}}element", {"name": layer.id, "type": f"cityops:{layer.id}Type",
                                                      "substitutionGroup": "gml:AbstractFeature"})
    kind = ElementTree.SubElement(root, f"{{{XS}}}complexType", {"name": f"{layer.id}Type"})
    extension = ElementTree.SubElement(ElementTree.SubElement(kind, f"{{{XS}}}complexContent"), f"{{{XS}}}extension",
                                       {"base": "gml:AbstractFeatureType"})
    sequence = ElementTree.SubElement(extension, f"{{{XS}}}sequence")
    ElementTree.SubElement(sequence, f"{{{XS}}}element", {"name": "geometry", "minOccurs": "0",
                                                          "type": GML_GEOMETRY_TYPES[layer.geometry_type]})
    for name in layer.properties:
        queryable = queryables.get(name)
        if queryable is not None and queryable.type in XSD_TYPES:
            ElementTree.SubElement(sequence, f"{{{XS}}}element", {"name": name, "minOccurs": "0", "nillable": "true",
                                                                  "type": XSD_TYPES[queryable.type]})
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def feature_schema(layer: Layer, queryables: dict, url: str) -> dict:
    """A GeoJSON Feature of this collection as JSON Schema: its properties with their types."""
    properties = {name: {"title": name, **JSON_SCHEMA_TYPES[queryables[name].type]}
                  for name in layer.properties if name in queryables and queryables[name].type in JSON_SCHEMA_TYPES}
    geometry_types = GEOJSON_GEOMETRY_TYPES.get(layer.geometry_type)
    geometry = {"type": "object", "x-ogc-role": "primary-geometry",
                **({"properties": {"type": {"enum": geometry_types}}} if geometry_types else {})}
    key = queryables.get(layer.key)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": url, "title": layer.title,
        "type": "object", "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {**(JSON_SCHEMA_TYPES[key.type] if key and key.type in JSON_SCHEMA_TYPES else {}), "x-ogc-role": "id"},
            "geometry": geometry,
            "properties": {"type": "object", "properties": properties},
        },
    }


def schemas_extension() -> Extension:
    router = APIRouter(tags=["OGC API Features"])

    @router.get("/collections/{collectionId}/schema", summary="Schema of a collection's features",
                response_class=JSONResponse, responses={200: {"content": {SCHEMA_MEDIA_TYPE: {}, XSD_MEDIA_TYPE: {}}}})
    async def schema(request: Request, collectionId: str,
                     f: Annotated[Literal["json", "xsd"], Query(description="JSON Schema (default) or GML application schema")] = "json"):
        catalogue = request.app.state.catalogue
        layer = catalogue.get(collectionId)
        queryables = dict(catalogue.queryables(layer.id))
        if f == "xsd":
            return Response(application_schema(layer, queryables), media_type=XSD_MEDIA_TYPE)
        return JSONResponse(feature_schema(layer, queryables, str(request.url)), media_type=SCHEMA_MEDIA_TYPE)

    return Extension(router=router, collection_links=(schema_links,))
