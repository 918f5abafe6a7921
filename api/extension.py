"""What a feature module contributes to the app: its router, conformance classes and links (services are
started in one place, `api.services`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from fastapi import APIRouter


@dataclass(frozen=True)
class Extension:
    router: APIRouter
    conformance: tuple[str, ...] = ()
    links: tuple[dict, ...] = field(default_factory=tuple)
    collection_links: tuple[Callable[..., Iterable[dict]], ...] = ()  # (layer, base URL) → links, e.g. tilesets
    # (request, connection) → more collection documents for GET /collections (e.g. raster collections)
    collections: Callable[..., Awaitable[list[dict]]] | None = None
    # (request, connection, collection id) → the document of one of those collections, or None when the id
    # is not one of this extension's: GET /collections/{collectionId} asks these after the live catalogue
    collection: Callable[..., Awaitable[dict | None]] | None = None
