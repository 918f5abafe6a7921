"""The OpenAPI document as OGC clients read it: OpenAPI 3.0 (what the `oas30` conformance classes
and the landing page's service-desc link promise, and what QGIS and GDAL parse), with the page size
of every items operation as ONE shared parameter, `components/parameters/limit` — the place QGIS
looks for the maximum page size and GDAL for the limit's default and maximum.

FastAPI writes OpenAPI 3.1 (JSON Schema 2020-12); the few 3.1-only forms it uses are rewritten
into their 3.0 equivalents here, after FastAPI has built the document."""

from __future__ import annotations

from typing import Any

from api.feature_params import ItemsParams

OPENAPI_VERSION = "3.0.3"
MEDIA_TYPE = f"application/vnd.oai.openapi+json;version={OPENAPI_VERSION[:3]}"
LIMIT_REF = "#/components/parameters/limit"


def as_ogc_document(document: dict[str, Any]) -> dict[str, Any]:
    shared = share_limit_parameter(declare_error_answers(document))
    rewritten = _to_30(shared)
    rewritten["openapi"] = OPENAPI_VERSION
    return rewritten


# what api.errors answers for every refused request: OGC API's exception document
EXCEPTION_SCHEMA = {"type": "object", "required": ["code"], "properties": {
    "code": {"type": "string", "description": "the kind of error, e.g. InvalidParameterValue"},
    "description": {"type": "string", "description": "the reason, and what to change"}}}


def declare_error_answers(document: dict[str, Any]) -> dict[str, Any]:
    """A request FastAPI's validation refuses is answered 400 with the exception document (api.errors),
    not the 422 + HTTPValidationError FastAPI declares, and so is every other refusal (the `default`
    answer): a generated client must expect what comes."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Exception"] = EXCEPTION_SCHEMA
    bad_request = {"description": "Bad request: the reason is in `description`",
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Exception"}}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses") if isinstance(operation, dict) else None
            if responses is None:
                continue
            if responses.pop("422", None) is not None:
                responses.setdefault("400", bad_request)
            # 401, 403, 404, 409, 412, 413, 428, 429, 503: every refusal is the same exception document
            responses.setdefault("default", {**bad_request, "description": "Refused or failed: the reason is in `description`"})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def limit_parameter() -> dict[str, Any]:
    field = ItemsParams.model_fields["limit"]
    return {
        "name": "limit", "in": "query", "required": False, "style": "form", "explode": False,
        "description": field.description,
        "schema": {"type": "integer", "minimum": 1, "maximum": field.json_schema_extra["maximum"],
                   "default": field.default},
    }


def share_limit_parameter(document: dict[str, Any]) -> dict[str, Any]:
    """Every GET …/items operation refers to components/parameters/limit instead of its own copy."""
    document.setdefault("components", {}).setdefault("parameters", {})["limit"] = limit_parameter()
    for path, operations in document.get("paths", {}).items():
        get = operations.get("get")
        if not path.endswith("/items") or not get:
            continue
        get["parameters"] = [{"$ref": LIMIT_REF} if parameter.get("name") == "limit" and parameter.get("in") == "query"
                             else parameter for parameter in get.get("parameters", [])]
    return document


def _to_30(node: Any) -> Any:
    """JSON Schema 2020-12 forms FastAPI/pydantic emit → OpenAPI 3.0 schema objects."""
    if isinstance(node, list):
        return [_to_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _to_30(value) for key, value in node.items()}
    for combiner in ("anyOf", "oneOf"):
        options = node.get(combiner)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del node[combiner]
            node["nullable"] = True
            if len(rest) == 1 and "$ref" not in rest[0]:
                node = {**rest[0], **node}
            elif len(rest) == 1:
                node["allOf"] = rest
            elif rest:
                node[combiner] = rest
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("examples"), list):  # a schema's examples; a parameter's is a map in 3.0 too
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node[bound], bool):
            node[plain] = node[bound]
            node[bound] = True
    if isinstance(node.get("type"), list):
        types = [kind for kind in node["type"] if kind != "null"]
        if len(types) < len(node["type"]):
            node["nullable"] = True
        node["type"] = types[0] if len(types) == 1 else node["type"]
    node.pop("contentMediaType", None)
    return node
