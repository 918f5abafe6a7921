"""Access keys and roles. A key is shown once at creation; only its SHA-256 is stored.

Keys are 256-bit random tokens, so a plain SHA-256 (not a slow password hash) is the right
tool: there is nothing to brute-force, and every API request can check a key in one index probe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

import psycopg
from anyio import to_thread
from psycopg.rows import dict_row

from gis.errors import Forbidden, InvalidInput, NotFound, Unauthorized

Role = Literal["viewer", "enforcement", "reviewer", "editor", "admin", "dispatcher", "field_unit", "supervisor", "device"]
ROLES: tuple[Role, ...] = ("viewer", "enforcement", "reviewer", "editor", "admin", "dispatcher", "field_unit", "supervisor", "device")
KEY_PREFIX = "cok_"
# What each role may do; admin may do everything.
GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "enforcement": frozenset({"viewer", "enforcement"}),
    "reviewer": frozenset({"viewer", "enforcement", "reviewer"}),
    "editor": frozenset({"viewer", "editor"}),
    # live operations (ops/): the command centre files, dispatches, checks and closes; a field unit
    # accepts and handles its own unit's cases; a supervisor also approves returns, voids,
    # extensions and deferrals and evaluates; a device only sends readings.
    "dispatcher": frozenset({"viewer", "dispatcher"}),
    "field_unit": frozenset({"viewer", "field_unit"}),
    "supervisor": frozenset({"viewer", "dispatcher", "supervisor"}),
    "device": frozenset({"device"}),
    "admin": frozenset(ROLES),
}


@dataclass(frozen=True)
class Principal:
    key_id: int
    label: str
    role: Role
    districts: tuple[str, ...]
    responsible_unit: str | None = None  # code of the responsible unit a field-unit key acts for

    @property
    def name(self) -> str:
        return self.label or f"key {self.key_id}"

    def require(self, role: Role) -> None:
        if role not in GRANTS[self.role]:
            raise Forbidden(f"this action needs a key with the {role} role; this key has the {self.role} role")

    def require_district(self, district_code: str | None) -> None:
        """District-scoped keys may change only what lies in their districts."""
        if not self.districts:
            return
        if district_code not in self.districts:
            raise Forbidden(
                f"this key may change only districts {', '.join(self.districts)}; "
                f"the feature is in district {district_code or 'unknown'}"
            )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def create_key(conn: psycopg.Connection, role: str, districts: list[str], label: str | None = None,
               responsible_unit: str | None = None) -> tuple[str, int]:
    """Store a new key; returns (the key itself, its id). The caller commits."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if (role == "field_unit") != (responsible_unit is not None):
        raise InvalidInput("a field_unit key needs a responsible unit (--unit CODE), and only a field_unit key has one")
    if responsible_unit is not None:
        with conn.cursor() as cur:
            if cur.execute("SELECT 1 FROM city.responsible_unit WHERE code = %s", [responsible_unit]).fetchone() is None:
                raise InvalidInput(f"unknown responsible unit {responsible_unit!r}; see city.responsible_unit")
    districts = sorted(set(districts))
    if districts:
        with conn.cursor(row_factory=dict_row) as cur:
            known = {r["code"] for r in cur.execute("SELECT code FROM city.district WHERE code = ANY(%s)", [districts])}
        unknown = [d for d in districts if d not in known]
        if unknown:
            raise InvalidInput(f"unknown district code(s) {', '.join(unknown)}; see GB/T 2260 codes in city.district")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO city.api_key (key_prefix, key_hash, role, districts, label, responsible_unit_code) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            [key[:12], _digest(key), role, districts, label, responsible_unit],
        ).fetchone()
    return key, row["id"]


def list_keys(conn: psycopg.Connection) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, key_prefix, role, districts, label, responsible_unit_code, created_at, revoked_at FROM city.api_key ORDER BY id"
        ).fetchall()


def revoke_key(conn: psycopg.Connection, key_id: int) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE city.api_key SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", [key_id])
        if cur.rowcount == 0:
            raise NotFound(f"no active key with id {key_id}")


_AUTHENTICATE_SQL = (
    "SELECT id, coalesce(label, '') AS label, role, districts, responsible_unit_code FROM city.api_key "
    "WHERE key_hash = %s AND revoked_at IS NULL"
)


def _principal_from_row(row: dict | None) -> Principal:
    if row is None:
        raise Unauthorized("unknown or revoked key")
    return Principal(key_id=row["id"], label=row["label"], role=row["role"], districts=tuple(d.strip() for d in row["districts"]),
                     responsible_unit=row.get("responsible_unit_code"))


async def authenticate(conn: psycopg.AsyncConnection | psycopg.Connection, digest: bytes) -> Principal:
    """The principal (role, districts, unit) of the key whose SHA-256 is `digest`, or Unauthorized
    when it is unknown or revoked: the one place a key becomes a principal, for the check a route
    makes in its own transaction, the check before a body is read (`api.key_gate`) and the CLI.
    A synchronous connection (the drone routes' pool) is read in a worker thread."""
    if isinstance(conn, psycopg.AsyncConnection):
        row = await (await conn.execute(_AUTHENTICATE_SQL, [digest])).fetchone()
    else:
        row = await to_thread.run_sync(lambda: conn.execute(_AUTHENTICATE_SQL, [digest]).fetchone())
    return _principal_from_row(row)


def parse_bearer(authorization: str | None) -> bytes:
    """The digest of the key in an `Authorization: Bearer …` header."""
    if not authorization:
        raise Unauthorized("this action needs an access key: send 'Authorization: Bearer <key>'")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip().startswith(KEY_PREFIX):
        raise Unauthorized("malformed Authorization header: expected 'Bearer cok_…'")
    return _digest(key.strip())


def parse_credentials(authorization: str | None, *, basic: bool = False) -> bytes:
    """The digest of the key in a Bearer header or, where `basic` is allowed (SensorThings clients
    send the key as the password of HTTP Basic), in Basic credentials."""
    if basic and authorization and authorization.lower().startswith("basic "):
        try:
            _user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthorized("malformed Basic credentials") from exc
        authorization = f"Bearer {password}"
    return parse_bearer(authorization)


def require_any(principal: Principal, roles: tuple[Role, ...]) -> None:
    """Admit `principal` if its role grants one of `roles` (403 otherwise)."""
    if len(roles) == 1:
        principal.require(roles[0])
    elif not any(role in GRANTS[principal.role] for role in roles):
        raise Forbidden(f"this action needs a key with the {' or '.join(roles)} role; this key has the {principal.role} role")
