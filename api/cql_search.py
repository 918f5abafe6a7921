"""A CQL2-JSON search POSTed to a collection's items, as OWSLib's `collection_items(cql=…)` and
pygeoapi-style clients send it, answered as the same search by GET (`filter` + `filter-lang`).

POST …/items is also create-feature (Part 4); a search is told apart by its body: a JSON object with
CQL2's `op` and `args` and no GeoJSON `type`, sent as `application/json` or
`application/query-cql-json`. Anything else goes on untouched to create-feature."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ITEMS_PATH = re.compile(r"^/collections/[^/]+/items/?$")
SEARCH_MEDIA_TYPES = ("application/json", "application/query-cql-json")
MAX_SEARCH_BYTES = 1 << 20


def cql2_expression(body: bytes) -> dict | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # nested past Python's recursion limit is not a search either
        return None
    if isinstance(document, dict) and "op" in document and isinstance(document.get("args"), list) and "type" not in document:
        return document
    return None


def _first_then(message: Message, receive: Receive) -> Receive:
    """`message` once, then the client's own messages (a streamed response waits on them for a disconnect)."""
    given = False

    async def next_message() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return message

    return next_message


class CqlSearchByPost:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not ITEMS_PATH.match(scope["path"]):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if media_type not in SEARCH_MEDIA_TYPES or (declared.isdigit() and int(declared) > MAX_SEARCH_BYTES):
            # not a search (or too large for one): create-feature checks its key before reading the body
            return await self.app(scope, receive, send)

        chunks, size, client_has_more = [], 0, True
        while client_has_more and size <= MAX_SEARCH_BYTES:  # a search is small: stop reading past the cap
            message = await receive()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            client_has_more = message.get("more_body", False)
        body = b"".join(chunks)
        expression = cql2_expression(body) if size <= MAX_SEARCH_BYTES else None
        if expression is None:
            # what was read, then the rest of the client's body if it has more (not a promise of more)
            read = {"type": "http.request", "body": body, "more_body": client_has_more}
            return await self.app(scope, _first_then(read, receive), send)

        query = scope.get("query_string", b"").decode("latin-1")
        search = urlencode({"filter": json.dumps(expression, ensure_ascii=False), "filter-lang": "cql2-json"})
        scope = {**scope, "method": "GET", "query_string": (f"{query}&{search}" if query else search).encode("latin-1"),
                 "headers": [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]}

        await self.app(scope, _first_then({"type": "http.request", "body": b"", "more_body": False}, receive), send)
