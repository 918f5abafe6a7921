"""Keyset paging of OGC API Features pages: a `next` link carries a cursor — the sort key of the
page's last feature — instead of an offset, so each page starts with an index range scan where it
left off instead of reading (and throwing away) every feature before it, and needs no count.

A cursor is opaque to clients and signed (HMAC-SHA256 with the database's `city.paging_key`) over
the query it belongs to: the collection and everything that selects or orders its features. A
cursor that was altered, or that is sent with another query, is refused with a 400 instead of
silently skipping or repeating features.

The sort key is carried as the text PostgreSQL writes for each sort column (`col::text`) and bound
back as an untyped literal, which PostgreSQL reads as the column's own type: timestamps, floats
(shortest exact text since PostgreSQL 12) and numerics round-trip exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from gis.errors import InvalidInput

MAC_BYTES = 16


@dataclass(frozen=True)
class SortTerm:
    column: str
    descending: bool


async def paging_key(conn: psycopg.AsyncConnection) -> bytes:
    """The database's cursor key (a replica holds the same). It never changes while the database
    lives, so the live catalogue reads it with its layers (`layers.live`) and pages are one
    statement; the catalogue is read again when the change feed reconnects (a restored or re-made
    database), so the key read then is that database's."""
    row = await (await conn.execute("SELECT secret FROM city.paging_key")).fetchone()
    return bytes(row["secret"])


def _mac(key: bytes, query: str, payload: bytes) -> bytes:
    return hmac.new(key, query.encode() + b"\n" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, query: str, values: Sequence[str | None]) -> str:
    """The cursor that continues `query` after the feature whose sort key is `values`."""
    payload = json.dumps(list(values), ensure_ascii=False, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(key, query, payload))}"


def verify(key: bytes, query: str, cursor: str, terms: int) -> list[str | None]:
    """The sort key a cursor carries, or InvalidInput if this server did not issue it for `query`."""
    refused = InvalidInput("cursor does not belong to this query (it was changed, or the collection, filter, "
                           "bbox, datetime or sortby differ from the request that issued it); "
                           "start again from the first page without a cursor")
    encoded_payload, _, encoded_mac = cursor.partition(".")
    try:
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (binascii.Error, ValueError):
        raise refused from None
    if not hmac.compare_digest(mac, _mac(key, query, payload)):
        raise refused
    values = json.loads(payload)
    if not (isinstance(values, list) and len(values) == terms and all(v is None or isinstance(v, str) for v in values)):
        raise refused  # signed by this server, so only a change of the sort columns' number gets here
    return values


def after_clause(terms: Sequence[SortTerm], values: Sequence[str | None], params: dict[str, Any]) -> sql.Composable:
    """Rows that come after `values` in ORDER BY terms (ASC puts NULLs last, DESC first, as
    PostgreSQL does); the last term is the collection's key, unique and never NULL."""
    names = [f"after_{i}" for i in range(len(terms))]
    params.update(zip(names, values))

    def after(i: int) -> sql.Composable:
        column, value = sql.Identifier("t", terms[i].column), sql.Placeholder(names[i])
        beyond = sql.SQL("{} {} {}").format(column, sql.SQL("<" if terms[i].descending else ">"), value)
        if i == len(terms) - 1:
            return beyond
        rest = after(i + 1)
        if values[i] is None:
            if terms[i].descending:  # NULLs came first: then every non-NULL
                return sql.SQL("({} IS NOT NULL OR ({} IS NULL AND {}))").format(column, column, rest)
            return sql.SQL("({} IS NULL AND {})").format(column, rest)
        if terms[i].descending:
            return sql.SQL("({} OR ({} = {} AND {}))").format(beyond, column, value, rest)
        return sql.SQL("({} OR {} IS NULL OR ({} = {} AND {}))").format(beyond, column, column, value, rest)

    return after(0)
