"""The HTTP edge: body size limits, rate limits, security headers, CORS, a local Swagger UI and the
bearer security scheme in the OpenAPI. `install(app)` adds them all.

Each limit answers before the work it protects: a body over its route's limit is refused from its
Content-Length (or when the streamed bytes pass the limit) before anything reads it; a client over
its rate gets 429 + Retry-After before any route runs. The rate limiter is in-process (token
buckets per worker), so with N workers a client may reach N times the configured rate; that bounds
abuse without a shared store, and a shared one (Redis) is the step when a deployment needs exact
limits (docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.key_gate import ValidKeys
from api.security_settings import SecuritySettings
from gis.errors import NotFound
from gis.settings import PROJECT_ROOT, settings_of

MB = 1024 * 1024
SWAGGER_DIST = PROJECT_ROOT / "web_map" / "node_modules" / "swagger-ui-dist"
SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                 "favicon-32x32.png": "image/png", "docs-init.js": "text/javascript"}
# Same origin only; MapLibre needs blob: workers and data:/blob: images; the HTML pages and
# Swagger UI set inline styles (never inline scripts: Swagger UI starts from /docs/assets/docs-init.js).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "worker-src 'self' blob:; child-src 'self' blob:; connect-src 'self'; font-src 'self' data:; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"strict-origin-when-cross-origin")]
DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/api", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset], layout: "BaseLayout"});
"""
DOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cityops API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"><link rel="icon" href="/docs/assets/favicon-32x32.png">
</head><body><div id="swagger-ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs-init.js"></script></body></html>"""


def _problem(send: Send, status: int, code: str, description: str, headers: dict[str, str] | None = None
             ) -> Awaitable[None]:
    async def respond() -> None:
        body = json.dumps({"code": code, "description": description}).encode()
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})
    return respond()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


# -- body size ----------------------------------------------------------------------------------

ORTHOPHOTO_PATH = re.compile(r"^/orthophotos/\d+/?$")
CITIZEN_UPLOAD_PATH = re.compile(r"^/open311/v2/(requests|media)(\.(json|xml))?$")


def body_limit_of(settings: SecuritySettings, method: str, path: str) -> tuple[int, str]:
    """(the largest body in bytes a request may send, the setting that raises it)."""
    if (method == "POST" and path.rstrip("/") == "/orthophotos") or (method == "PUT" and ORTHOPHOTO_PATH.match(path)):
        return int(settings.orthophoto_max_mb * MB), "CITYOPS_ORTHOPHOTO_MAX_MB"
    if method == "POST" and CITIZEN_UPLOAD_PATH.match(path):
        return int(settings.citizen_report_max_mb * MB), "CITYOPS_CITIZEN_REPORT_MAX_MB"
    if method == "POST" and path.rstrip("/") == "/imports":
        return int(settings.import_upload_max_mb * MB), "CITYOPS_IMPORT_UPLOAD_MAX_MB"
    if path.startswith(("/collections/", "/queries/", "/locate", "/within")):
        return int(settings.feature_body_max_mb * MB), "CITYOPS_FEATURE_BODY_MAX_MB"
    return int(settings.body_max_mb * MB), "CITYOPS_BODY_MAX_MB"


class BodyLimit:
    """413 for a body over its route's limit: from Content-Length before the body is read, or as soon
    as the streamed bytes pass it (chunked uploads), whatever the route would have done with it."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit, setting = body_limit_of(self.settings, scope["method"], scope["path"])
        reason = f"the request body is over {limit / MB:g} MB, the limit of {scope['path']} ({setting})"
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _problem(send, 413, "PayloadTooLarge", reason)
        received, over, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    # the route sees the body end here; its answer is replaced by the 413 below
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                if not started:
                    started = True
                    await _problem(send, 413, "PayloadTooLarge", reason)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise  # the route's own failure; a cut-off body (ClientDisconnect) is answered below
        if over and not started:
            await _problem(send, 413, "PayloadTooLarge", reason)


# -- rate limits --------------------------------------------------------------------------------

class TokenBuckets:
    """Token buckets by client, least recently seen forgotten first when the table is full."""

    def __init__(self, per_s: float, burst: int, max_clients: int, clock: Callable[[], float] = time.monotonic):
        self.per_s, self.burst, self.max_clients, self.clock = per_s, burst, max_clients, clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, client: str) -> float:
        tokens, at = self.buckets.get(client, (float(self.burst), self.clock()))
        return min(float(self.burst), tokens + (self.clock() - at) * self.per_s)

    def _store(self, client: str, tokens: float) -> None:
        self.buckets[client] = (tokens, self.clock())
        self.buckets.move_to_end(client)
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)

    def wait_s(self, client: str) -> float:
        """Seconds until client has a token (0 = it has one now)."""
        if self.per_s <= 0:
            return 0.0
        level = self._level(client)
        return 0.0 if level >= 1 else (1 - level) / self.per_s

    def take(self, client: str) -> float:
        """Take a token; 0 if there was one, else the seconds to wait (nothing taken)."""
        wait = self.wait_s(client)
        if wait == 0 and self.per_s > 0:
            self._store(client, self._level(client) - 1)
        return wait


TILE_PATH = re.compile(r"/tiles/[^/]+/\d+/\d+/\d+(\.\w+)?$")


def _tile_read(scope: Scope) -> bool:
    return scope["method"] in ("GET", "HEAD") and TILE_PATH.search(scope["path"]) is not None


class RateLimit:
    """429 + Retry-After per client IP, per access key, and — much stricter — per IP for failed key
    attempts (a 401 to a request that carried a key): a key cannot be guessed at any useful rate."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings):
        self.app = app
        size = settings.rate_table_max
        self.by_ip = TokenBuckets(settings.rate_ip_per_s, settings.rate_ip_burst, size)
        self.by_key = TokenBuckets(settings.rate_key_per_s, settings.rate_key_burst, size)
        self.failed = TokenBuckets(settings.failed_auth_per_min / 60, settings.failed_auth_burst, size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ip = (scope.get("client") or ("unknown", 0))[0]
        authorization = _header(scope, b"authorization")
        key = hashlib.sha256(authorization.encode()).hexdigest()[:32] if authorization else None
        if key and (wait := self.failed.wait_s(ip)):
            return await self._refuse(send, wait, "too many failed key attempts from this address")
        # Map clients (the wall, QGIS, GDAL's tile readers) fetch hundreds of tiles a second; tiles are
        # cached and cheap, so tile reads spend no address budget (keys and failed keys still count).
        if not _tile_read(scope) and (wait := self.by_ip.take(ip)):
            return await self._refuse(send, wait, "too many requests from this address")
        if key and (wait := self.by_key.take(key)):
            return await self._refuse(send, wait, "too many requests with this key")

        async def watching_send(message: Message) -> None:
            if key and message["type"] == "http.response.start" and message["status"] == 401:
                self.failed.take(ip)
            await send(message)

        await self.app(scope, receive, watching_send)

    @staticmethod
    async def _refuse(send: Send, wait_s: float, reason: str) -> None:
        retry = max(1, math.ceil(wait_s))
        await _problem(send, 429, "TooManyRequests", f"{reason}; retry in {retry} s", {"Retry-After": str(retry)})


# -- headers, docs, OpenAPI ---------------------------------------------------------------------

class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", ())}
                message["headers"] = [*message.get("headers", ()),
                                      *((name, value) for name, value in SECURITY_HEADERS if name not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _local_swagger_ui(app: FastAPI) -> None:
    """/docs from web_map/node_modules/swagger-ui-dist (pinned in web_map/package.json), not a CDN."""
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/docs"]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str):
        if name not in SWAGGER_FILES:
            raise NotFound(f"no file /docs/assets/{name}")
        if name == "docs-init.js":
            return HTMLResponse(DOCS_INIT, media_type="text/javascript")
        return FileResponse(SWAGGER_DIST / name, media_type=SWAGGER_FILES[name],
                            headers={"Cache-Control": "public, max-age=86400"})


def declare_bearer_scheme(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the bearer scheme, required by each operation that reads an Authorization header."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http", "scheme": "bearer",
        "description": "an access key (cok_…) from `cityops keys create`; reads of public layers need none"}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if isinstance(operation, dict) and any(
                    p.get("in") == "header" and p.get("name", "").lower() == "authorization"
                    for p in operation.get("parameters", [])):
                operation["security"] = [{"bearerAuth": []}]
    return schema


def install(app: FastAPI, settings: SecuritySettings | None = None) -> None:
    """Middleware from the inside out: CORS, rate limits, body limits, security headers (outermost,
    so every answer, a 413 or 429 too, carries them); and the keys the routes check before a body
    (api.key_gate) are remembered for CITYOPS_KEY_CACHE_S."""
    settings = settings or settings_of(SecuritySettings)
    app.state.valid_keys = ValidKeys(settings.key_cache_s)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=settings.cors_methods,
                           allow_headers=["Authorization", "Content-Type", "If-Match", "Content-Crs"],
                           expose_headers=["ETag", "Content-Crs", "Location"])
    app.add_middleware(RateLimit, settings=settings)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(SecurityHeaders)
    _local_swagger_ui(app)
