"""Shared fixtures: a real PostGIS (the self-managed cluster, or CITYOPS_DATABASE_URL's server),
throwaway databases made once per run, the app over HTTP, and a live uvicorn for real clients."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bench.servers import free_port, running
from gis import migrate, provision
from gis.db import open_connection
from gis.keys import create_key
from gis.settings import Settings
from layers.demo.load import load_demo

# The drone review queue (city_pair, drone_flights, pending_candidates …), shared by the drone and wall tests.
pytest_plugins = ["tests.fixtures_drone"]

RUN_ID = f"{os.getpid()}"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def db_server(settings: Settings) -> Settings:
    provision.start_server(settings)
    return settings


class Databases:
    """Creates throwaway databases on the test server and drops them at the end of the run."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.names: list[str] = []

    def create(self, purpose: str, *, migrated: bool = True) -> str:
        name = f"cityops_test_{RUN_ID}_{purpose}"
        provision.drop_database(self.settings, name)
        info = provision.create_database(self.settings, name)
        self.names.append(name)
        if migrated:
            migrate.upgrade(info)
        return info

    def demo_city(self, purpose: str) -> str:
        """A migrated database of its own holding the demo city at scale 1."""
        info = self.create(purpose)
        with open_connection(info) as conn:
            load_demo(conn, scale=1)
            conn.commit()
        return info

    def drop_all(self) -> None:
        for name in self.names:
            provision.drop_database(self.settings, name)


@pytest.fixture(scope="session")
def databases(db_server: Settings) -> Iterator[Databases]:
    made = Databases(db_server)
    yield made
    made.drop_all()


@pytest.fixture(scope="session")
def city_db(databases: Databases) -> str:
    """A migrated database holding the demo city at scale 1 (shared: tests that write clean up)."""
    return databases.demo_city("city")


@pytest.fixture(scope="session")
def keys(city_db: str) -> dict[str, str]:
    """One key per role the tests need; 'editor_sucheng' is limited to 宿城区 (321302)."""
    made = {}
    with open_connection(city_db) as conn:
        for name, role, districts in [
            ("admin", "admin", []), ("viewer", "viewer", []), ("editor", "editor", []),
            ("editor_sucheng", "editor", ["321302"]), ("reviewer", "reviewer", []),
            ("enforcement", "enforcement", []),
        ]:
            made[name], _ = create_key(conn, role, districts, f"test {name}")
        conn.commit()
    return made


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def client(settings: Settings, city_db: str) -> Iterator[TestClient]:
    app = create_app(settings, conninfo=city_db)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def live_server(city_db: str, settings: Settings) -> Iterator[str]:
    """uvicorn in its own process on a free loopback port, for GDAL, OWSLib and browsers."""
    port = free_port()
    env = {"CITYOPS_DATABASE_URL": city_db, "CITYOPS_STATE_DIR": str(settings.state_dir)}
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    with running("live_server", command, env, port, log_dir=ARTIFACTS, timeout_s=60) as base:
        yield base
