"""The HTTP edge (issue 13): body limits before the body is read, rate limits with Retry-After,
security headers, CORS from settings, Swagger UI served locally, the bearer scheme in the OpenAPI."""

from __future__ import annotations

import time

import pytest
from fastapi.middleware.cors import CORSMiddleware
from fastapi.testclient import TestClient

from api import hardening
from api.app import create_app
from api.hardening import TokenBuckets
from api.security_settings import SecuritySettings
from tests.conftest import bearer


def _app_with(settings, city_db, edge: SecuritySettings):
    """The app with the edge middleware installed from edge instead of the environment."""
    app = create_app(settings, conninfo=city_db)
    edge_layers = (hardening.RateLimit, hardening.BodyLimit, hardening.SecurityHeaders, CORSMiddleware)
    app.user_middleware[:] = [m for m in app.user_middleware if m.cls not in edge_layers]
    hardening.install(app, edge)
    return app


def test_oversized_body_is_refused_from_its_content_length(client):
    body = b"x" * (2 * 1024 * 1024)
    answer = client.post("/alarms", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "CITYOPS_BODY_MAX_MB" in answer.json()["description"]


def test_streamed_body_over_the_limit_is_cut_off(client, keys):
    def chunks():
        for _ in range(40):  # 40 MB with no Content-Length: counted as it streams
            yield b"[" * (1024 * 1024)
    answer = client.post("/collections/buildings/items", content=chunks(),
                         headers={**bearer(keys["editor"]), "Content-Type": "application/geo+json"})
    assert answer.status_code == 413 and "CITYOPS_FEATURE_BODY_MAX_MB" in answer.json()["description"]


def test_a_million_vertex_polygon_is_refused(client, keys):
    ring = [[118.2 + i * 1e-7, 33.9] for i in range(250_000)] + [[118.3, 33.95]] * 250_000 + [[118.2, 33.9]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring] * 2}}
    answer = client.post("/collections/buildings/items", json=feature, headers=bearer(keys["editor"]))
    assert answer.status_code in (400, 413)
    reason = answer.json()["description"]
    assert "CITYOPS_FEATURE_MAX_VERTICES" in reason or "CITYOPS_FEATURE_BODY_MAX_MB" in reason


def test_security_headers_on_every_answer(client):
    for path in ("/", "/collections/nosuch", "/map/", "/docs"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["referrer-policy"]


def test_cors_lets_other_sites_read_but_not_write_by_default(client):
    answer = client.get("/collections", headers={"Origin": "https://department.example"})
    assert answer.headers["access-control-allow-origin"] == "*"  # another department's web map reads public data
    preflight = client.options("/collections/buildings/items", headers={
        "Origin": "https://department.example", "Access-Control-Request-Method": "DELETE"})
    assert preflight.status_code == 400  # no cross-origin writes


def test_cors_can_be_same_origin_only(settings, city_db):
    app = _app_with(settings, city_db, SecuritySettings(cors_origins=[]))
    with TestClient(app) as same_origin:
        answer = same_origin.get("/collections", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in answer.headers


def test_cors_from_settings_allows_only_get(settings, city_db):
    edge = SecuritySettings(cors_origins=["https://wall.example"])
    app = _app_with(settings, city_db, edge)
    with TestClient(app) as cors_client:
        get = cors_client.get("/collections", headers={"Origin": "https://wall.example"})
        assert get.headers["access-control-allow-origin"] == "https://wall.example"
        delete = cors_client.options("/collections/buildings/items/1", headers={
            "Origin": "https://wall.example", "Access-Control-Request-Method": "DELETE"})
        assert delete.status_code == 400


def test_swagger_ui_is_served_locally(client):
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "/docs/assets/swagger-ui-bundle.js" in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs-init.js"):
        assert client.get(f"/docs/assets/{asset}").status_code == 200
    assert client.get("/docs/assets/../../README.md").status_code == 404


def test_openapi_declares_the_bearer_scheme(client):
    document = client.get("/api").json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    secured = [op for path in document["paths"].values() for op in path.values() if isinstance(op, dict) and "security" in op]
    assert secured and all(op["security"] == [{"bearerAuth": []}] for op in secured)


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    buckets = TokenBuckets(per_s=2, burst=3, max_clients=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take("a") == 0
    buckets.take("b"), buckets.take("c")
    assert "a" not in buckets.buckets  # the oldest client is forgotten when the table is full


def test_failed_key_attempts_are_rate_limited(settings, city_db, keys):
    edge = SecuritySettings(failed_auth_per_min=6, failed_auth_burst=5, rate_ip_burst=1000)
    app = _app_with(settings, city_db, edge)
    wrong = {"Authorization": "Bearer cok_" + "x" * 43}
    with TestClient(app) as limited:
        answers = [limited.post("/alarms", json={}, headers=wrong).status_code for _ in range(8)]
        assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}
        refused = limited.get("/collections", headers=bearer(keys["viewer"]))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert limited.get("/collections").status_code == 200  # anonymous reads go on


def test_per_ip_rate_limit(settings, city_db):
    edge = SecuritySettings(rate_ip_per_s=1, rate_ip_burst=3)
    app = _app_with(settings, city_db, edge)
    with TestClient(app) as limited:
        codes = [limited.get("/conformance").status_code for _ in range(5)]
        assert codes[:3] == [200] * 3 and codes[3] == 429


def test_orthophoto_upload_size_comes_from_settings(settings, city_db, keys):
    edge = SecuritySettings(orthophoto_max_mb=0.5)
    app = _app_with(settings, city_db, edge)
    with TestClient(app) as limited:
        answer = limited.post("/orthophotos", headers=bearer(keys["enforcement"]),
                              files={"file": ("big.tif", b"\0" * (1024 * 1024), "image/tiff")})
        assert answer.status_code == 413 and "CITYOPS_ORTHOPHOTO_MAX_MB" in answer.json()["description"]


def test_a_polygon_over_the_vertex_limit_is_refused_before_shapely(client, keys):
    ring = [[118.2 + i * 1e-8, 33.9 + (i % 2) * 1e-8] for i in range(150_000)] + [[118.2, 33.9]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    started = time.monotonic()
    answer = client.post("/collections/buildings/items", json=feature, headers=bearer(keys["editor"]))
    assert answer.status_code == 400 and "CITYOPS_FEATURE_MAX_VERTICES" in answer.json()["description"]
    assert time.monotonic() - started < 5
