"""A write without the right key is refused from its headers, before its body is read (issue 13:
an anonymous 300 MB body was read in full before the 401, and grew the server by 480 MB).

A real uvicorn; a raw socket sends a request's headers (declaring a body of hundreds of MB, under
the route's limit) and only the first 64 KB of the body, then waits: the 401/403 must come back
while the client still owes almost all of its body, and the server closes the connection instead
of reading the rest. The same routes still take a small body with the right key, and an anonymous
CQL2-JSON search by POST (no key needed) still answers."""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import time

import httpx
import pytest

from bench.servers import free_port, running
from tests.conftest import ARTIFACTS, bearer

MB = 1 << 20
FIRST_PART = 64 * 1024
SQUARE = {"type": "Feature", "properties": {"name": "gate"}, "geometry": {"type": "Polygon", "coordinates": [
    [[118.21, 33.91], [118.2101, 33.91], [118.2101, 33.9101], [118.21, 33.9101], [118.21, 33.91]]]}}


@pytest.fixture(scope="module")
def server(city_db, settings):
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir)}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("key_before_body_server", command, env, port, log_dir=ARTIFACTS, timeout_s=90) as base:
        yield port, base


def _partial_request(port: int, method: str, path: str, headers: dict[str, str], declared: int, timeout_s: float = 20
                     ) -> tuple[int, dict[str, str], dict, float, bool]:
    """Send the head and FIRST_PART bytes of a `declared`-byte body; (status, headers, JSON body,
    seconds to the answer, whether the server then closed the connection)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {declared}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        started = time.monotonic()
        sock.sendall(head.encode("latin-1") + _first_part(headers))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection without an answer: {answer!r}"
            answer += chunk
        seconds = time.monotonic() - started
        status_line, _, rest = answer.partition(b"\r\n")
        raw_headers, _, body = rest.partition(b"\r\n\r\n")
        fields = dict(line.decode("latin-1").split(": ", 1) for line in raw_headers.split(b"\r\n"))
        fields = {name.lower(): value for name, value in fields.items()}
        while len(body) < int(fields["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "the answer was cut short"
            body += chunk
        try:
            closed = sock.recv(65536) == b""
        except ConnectionResetError:  # closed with the unread body still in its socket buffer
            closed = True
        except TimeoutError:
            closed = False
        return int(status_line.split()[1]), fields, json.loads(body), seconds, closed


def _multipart_head() -> dict[str, str]:
    return {"Content-Type": "multipart/form-data; boundary=cityopsgate"}


def _first_part(headers: dict[str, str]) -> bytes:
    """The first FIRST_PART bytes of a well-formed body (a route that reads it waits for the rest)."""
    start = b""
    if headers.get("Content-Type", "").startswith("multipart/"):
        start = (b'--cityopsgate\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
                 b"Content-Type: text/csv\r\n\r\nlon,lat\r\n")
    elif "json" in headers.get("Content-Type", ""):
        start = b'{"type": "Feature", "properties": {"note": "'
    return start + b"x" * (FIRST_PART - len(start))


@pytest.mark.parametrize("who, want", [("anonymous", 401), ("bad key", 401), ("viewer", 403), ("editor", None)])
def test_an_import_upload_is_refused_before_its_body(server, keys, who, want):
    port, _ = server
    headers = _multipart_head()
    if who == "bad key":
        headers["Authorization"] = "Bearer cok_" + "x" * 43
    elif who != "anonymous":
        headers.update(bearer(keys[who]))
    if want is None:  # a key that may upload gets its body read: the route then waits for the rest
        with pytest.raises((TimeoutError, socket.timeout)):
            with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
                sock.sendall(f"POST /imports HTTP/1.1\r\nHost: x\r\nContent-Length: {300 * MB}\r\n".encode()
                             + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n" + _first_part(headers))
                sock.recv(1)
        return
    status, fields, body, seconds, closed = _partial_request(port, "POST", "/imports", headers, 300 * MB)
    assert status == want, body
    assert seconds < 10
    assert fields["connection"] == "close" and closed, "the server kept the connection to read the rest of the body"
    if want == 401:
        assert fields["www-authenticate"] == "Bearer" and "key" in body["description"]
    else:
        assert "editor" in body["description"]


def test_feature_writes_and_readings_are_refused_before_their_body(server, keys):
    port, _ = server
    geojson = {"Content-Type": "application/geo+json"}
    status, _, body, _, closed = _partial_request(port, "POST", "/collections/buildings/items", geojson, 15 * MB)
    assert (status, closed) == (401, True), body
    # application/json too: past the size of a CQL2-JSON search, it is not read to tell one apart
    status, _, body, _, closed = _partial_request(port, "POST", "/collections/buildings/items",
                                                  {"Content-Type": "application/json"}, 15 * MB)
    assert (status, closed) == (401, True), body
    status, _, body, _, closed = _partial_request(
        port, "PUT", "/collections/stall_sites/items/1", {**geojson, **bearer(keys["enforcement"])}, 15 * MB)
    assert (status, closed) == (403, True), body  # enforcement keys write no feature at all
    basic = base64.b64encode(b"gateway:cok_not-a-device-key").decode()
    status, _, body, _, closed = _partial_request(
        port, "POST", "/sta/v1.1/CreateObservations", {"Content-Type": "application/json", "Authorization": f"Basic {basic}"},
        900 * 1024)
    assert (status, closed) == (401, True), body


def test_the_right_key_and_anonymous_searches_still_pass(server, keys, city_db):
    _, base = server
    search = {"op": "=", "args": [{"property": "name"}, "no such name"]}
    answer = httpx.post(f"{base}/collections/stall_sites/items", json=search, timeout=30)
    assert answer.status_code == 200 and answer.json()["numberReturned"] == 0, answer.text
    files = {"file": ("gate.geojson", json.dumps({"type": "FeatureCollection", "features": [SQUARE]}).encode(),
                      "application/geo+json")}
    answer = httpx.post(f"{base}/imports", files=files, data={"layer": "buildings", "dry_run": "true"},
                        headers=bearer(keys["editor"]), timeout=30)
    assert answer.status_code == 202, answer.text
    refused = httpx.post(f"{base}/imports", files=files, data={"layer": "buildings"}, timeout=30)
    assert refused.status_code == 401 and refused.headers["connection"] == "close"


def test_every_keyed_write_of_the_openapi_refuses_before_its_body(server):
    """Each operation the OpenAPI marks with the bearer scheme, other than reads, answers an anonymous
    request from its headers (a router without the key-first route class would wait for the body)."""
    port, base = server
    document = httpx.get(f"{base}/api", timeout=60).json()
    operations = [(method.upper(), re.sub(r"\{[^}]+\}", "1", path),
                   next(iter(operation.get("requestBody", {}).get("content", {"application/json": None}))))
                  for path, item in document["paths"].items() for method, operation in item.items()
                  if method in ("post", "put", "patch", "delete") and operation.get("security")]
    assert len(operations) > 20
    waited = []
    for method, path, media_type in operations:
        try:
            status, _, _, _, closed = _partial_request(port, method, path, {"Content-Type": media_type}, 900 * 1024,
                                                       timeout_s=5)
        except TimeoutError:
            waited.append(f"{method} {path} ({media_type})")
            continue
        assert (status, closed) == (401, True), f"{method} {path}: {status}"
    assert not waited, f"read the body before checking the key: {waited}"
