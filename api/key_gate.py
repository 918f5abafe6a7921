"""The key of a write is checked from its headers before its body is received.

FastAPI reads a route's body before it solves the route's dependencies, so a request without the
right key had its whole body read (up to the route's limit: 512 MB for an import) before the 401.
Routes of `KeyFirstRoute` routers whose dependencies declare a key rule (`api.deps.require`) first
resolve the key from the `Authorization` header — on one pooled connection, released before the
route takes its own, or from a short cache of keys found valid — and answer 401/403 (with
`Connection: close`, so the rest of the body is never read) before anything calls `receive()`.
The route still checks the key itself, on its own connection in its own transaction; the gate
only decides who gets a body read. Both map a key to its principal by `gis.keys.authenticate`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.deps import KeyRule
from api.errors import domain_problem, operational_problem
from gis.errors import Forbidden, Unauthorized
from gis.keys import Principal, authenticate

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CLOSE = {"Connection": "close"}  # the unread rest of the body is dropped with the connection


def key_rule_of(dependant: Dependant) -> KeyRule | None:
    """The key rule among a route's dependencies (at any depth), if it has one."""
    for dependency in dependant.dependencies:
        rule = getattr(dependency.call, "key_rule", None) or key_rule_of(dependency)
        if rule is not None:
            return rule
    return None


class ValidKeys:
    """Principals of keys found valid, remembered `ttl_s` (a revoked key passes the gate at most that
    long, and is then refused by its route); unknown keys are never remembered."""

    def __init__(self, ttl_s: float, max_keys: int = 10_000):
        self.ttl_s, self.max_keys = ttl_s, max_keys
        self.known: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    def get(self, digest: bytes) -> Principal | None:
        found = self.known.get(digest)
        if found is None or time.monotonic() - found[1] > self.ttl_s:
            return None
        return found[0]

    def put(self, digest: bytes, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        self.known[digest] = (principal, time.monotonic())
        self.known.move_to_end(digest)
        while len(self.known) > self.max_keys:
            self.known.popitem(last=False)


async def refusal(request: Request, rule: KeyRule) -> Response | None:
    """The answer to a caller whose key does not pass `rule` (None: it passes), from the headers alone."""
    valid: ValidKeys = request.app.state.valid_keys
    try:
        digest = rule.digest(request.headers.get("authorization"))
        principal = valid.get(digest)
        if principal is None:
            async with request.app.state.pool.connection() as conn:
                principal = await authenticate(conn, digest)
            valid.put(digest, principal)
        rule.admit(principal)
    except (Unauthorized, Forbidden) as exc:
        return domain_problem(exc, CLOSE)
    except psycopg.OperationalError as exc:  # a full pool or a database outage: 503 + Retry-After
        answer = operational_problem(exc)
        answer.headers.update(CLOSE)
        return answer
    return None


class KeyFirstRoute(APIRoute):
    """A route that checks its key rule (if it has one and takes a body) before its body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        rule = key_rule_of(self.dependant)
        if rule is None or not (self.methods - READ_METHODS):
            return handler

        async def key_first(request: Request) -> Response:
            return await refusal(request, rule) or await handler(request)

        return key_first
