"""Bodies of OGC API Features responses: GeoJSON pages and GeoJSON-seq / CSV streams built from
chunks of rows, links, collection documents, and HTML through Jinja2 templates."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from gis.crs import CRS84_URI, STORAGE_CRS, ServedCrs, served_uris
from layers.catalogue import Layer
from layers.export import spreadsheet_safe
from layers.live import Extent

GEOJSON = "application/geo+json"
# what a resource with an `f=html` alternative answers, declared in the OpenAPI
JSON_OR_HTML: dict[int | str, dict] = {200: {"content": {"application/json": {}, "text/html": {}}}}
MEDIA_TYPES = {"json": GEOJSON, "html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8",
               "jsonseq": "application/geo+json-seq"}
RECORD_SEPARATOR = "\x1e"  # RFC 8142: each GeoJSON text starts with RS and ends with LF
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

# (layer, base URL) → extra links of a collection, e.g. its tilesets; other modules append to
# app.state.collection_link_providers.
LinkProvider = Callable[[Layer, str], Iterable[dict]]


def output_format(request: Request, f: str | None) -> str:
    """`f` wins; otherwise a browser (text/html before any JSON in Accept) gets HTML."""
    if f:
        return "json" if f == "geojson" else f
    accept = request.headers.get("accept", "")
    html_at = accept.find("text/html")
    json_at = accept.find("json")
    return "html" if html_at >= 0 and (json_at < 0 or html_at < json_at) else "json"


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def html(request: Request, template: str, status_code: int = 200, **context):
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def link(href: str, rel: str, media_type: str, title: str) -> dict:
    return {"href": href, "rel": rel, "type": media_type, "title": title}


def self_links(request: Request, current: str, title: str) -> list[dict]:
    """self plus an alternate link per other representation of the same resource."""
    kinds = {"json": "application/json", "html": "text/html"}
    return [link(str(request.url.include_query_params(f=kind)), "self" if kind == current else "alternate",
                 media, f"{title} as {kind.upper()}") for kind, media in kinds.items()]


def collection_document(request: Request, layer: Layer, extent: Extent, providers: Iterable[LinkProvider]) -> dict:
    base = base_url(request)
    href = f"{base}/collections/{layer.id}"
    document = {
        "id": layer.id, "title": layer.title, "description": layer.description or layer.legend,
        "itemType": "feature", "crs": served_uris(), "storageCrs": STORAGE_CRS.uri,
        "links": [
            link(href, "self", "application/json", layer.title),
            link(f"{href}?f=html", "alternate", "text/html", f"{layer.title} as HTML"),
            link(f"{href}/items", "items", GEOJSON, "Features as GeoJSON"),
            link(f"{href}/items?f=html", "items", "text/html", "Features as HTML"),
            link(f"{href}/items?f=jsonseq", "items", MEDIA_TYPES["jsonseq"], "Features as GeoJSON text sequence"),
            link(f"{href}/items?f=csv", "items", "text/csv", "Features as CSV"),
            link(f"{href}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                 "application/schema+json", "Queryable properties"),
        ],
    }
    for provider in providers:
        document["links"].extend(provider(layer, base))
    document["extent"] = {}
    if extent.bbox:
        document["extent"]["spatial"] = {"bbox": [list(extent.bbox)], "crs": CRS84_URI}
    if extent.interval:
        document["extent"]["temporal"] = {"interval": [list(extent.interval)],
                                          "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return document


def page_links(request: Request, layer: Layer, limit: int, offset: int, next_cursor: str | None,
               next_limit: int | None = None) -> list[dict]:
    """self/alternate, collection, next (with the cursor that continues where this page ended)
    and, on a page chosen by offset, prev; `next_limit` (default: limit) is the page size the next
    link asks for. Clients treat next links as opaque, and one that follows them through a whole
    collection from a small fixed page (GDAL 3.6 always starts with limit=10) then reads big
    pages instead of thousands of small ones."""
    links = self_links(request, "json", f"{layer.title} features")
    links[0]["type"] = GEOJSON
    links.append(link(f"{base_url(request)}/collections/{layer.id}", "collection", "application/json", layer.title))
    if next_cursor is not None:
        following = request.url.remove_query_params("offset").include_query_params(
            cursor=next_cursor, limit=next_limit or limit)
        links.append(link(str(following), "next", GEOJSON, "Next page"))
    if offset > 0:
        links.append(link(str(request.url.include_query_params(offset=max(0, offset - limit))), "prev", GEOJSON,
                          "Previous page"))
    return links


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def geojson_page(head: dict, features: list[str]) -> str:
    """A FeatureCollection of features already written as GeoJSON text, with its head (counts, links)."""
    return json.dumps(head, ensure_ascii=False)[:-1] + ',"features":[' + ",".join(features) + "]}"


async def geojson_seq(chunks: AsyncIterator[list[dict]]) -> AsyncIterator[str]:
    async for rows in chunks:
        yield "".join(f"{RECORD_SEPARATOR}{row['feature']}\n" for row in rows)


async def csv_rows(columns: list[str], chunks: AsyncIterator[list[dict]]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    async for rows in chunks:
        writer.writerows({name: spreadsheet_safe(value) for name, value in row.items()} for row in rows)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def crs_header(crs: ServedCrs) -> dict[str, str]:
    return {"Content-Crs": f"<{crs.uri}>"}
