"""The command line as a user meets it: one-line messages and non-zero exits on bad input."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from gis.db import open_connection
from tests.support.cli import cityops

def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(lines)


def test_wrong_database_url_is_one_clear_line():
    result = cityops("db", "status", env={"CITYOPS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    message = one_line_error(result)
    assert "cannot connect to the database" in message and "port=1" in message


def test_malformed_database_url_is_one_clear_line():
    message = one_line_error(cityops("db", "status", env={"CITYOPS_DATABASE_URL": "not a url at all"}))
    assert "database" in message


def test_database_without_postgis_is_named(databases, settings):
    info = databases.create("nopostgis", migrated=False)
    with open_connection(info, autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS postgis")
    message = one_line_error(cityops("db", "status", env={"CITYOPS_DATABASE_URL": info}))
    assert "PostGIS extension is not installed" in message


def test_second_demo_load_is_refused(city_db):
    message = one_line_error(cityops("demo", env={"CITYOPS_DATABASE_URL": city_db}))
    assert "already holds a city" in message and "--replace" in message


def test_port_in_use_is_one_clear_line(city_db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = one_line_error(cityops("serve", "--port", str(port), env={"CITYOPS_DATABASE_URL": city_db}))
    assert f"port {port}" in message and "in use" in message


def test_keys_create_list_revoke(city_db):
    env = {"CITYOPS_DATABASE_URL": city_db}
    created = cityops("keys", "create", "--role", "reviewer", "--district", "321311", "--label", "cli test", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("cok_") and len(key) > 40
    listed = cityops("keys", "list", env=env)
    assert "cli test" in listed.stderr + listed.stdout and key not in listed.stdout + listed.stderr
    bad = one_line_error(cityops("keys", "create", "--role", "king", env=env))
    assert "unknown role" in bad
    bad = one_line_error(cityops("keys", "create", "--role", "viewer", "--district", "999999", env=env))
    assert "unknown district" in bad
    with open_connection(city_db) as conn:
        key_id = conn.execute("SELECT id FROM city.api_key WHERE label = 'cli test'").fetchone()["id"]
    assert cityops("keys", "revoke", str(key_id), env=env).returncode == 0
    assert "no active key" in one_line_error(cityops("keys", "revoke", str(key_id), env=env))


def test_migrate_and_status(databases):
    info = databases.create("climigrate", migrated=False)
    env = {"CITYOPS_DATABASE_URL": info}
    assert cityops("db", "migrate", env=env).returncode == 0
    status = cityops("db", "status", env=env)
    assert status.returncode == 0 and "PostGIS" in status.stderr
    assert cityops("db", "downgrade", "base", env=env).returncode == 0


def test_own_cluster_lives_in_the_project(settings):
    if not settings.uses_own_cluster:
        pytest.skip("CITYOPS_DATABASE_URL points at an external server")
    from gis.cluster import cluster_for

    cluster = cluster_for(settings)
    assert cluster.is_running()
    project = Path(__file__).resolve().parent.parent
    assert str(cluster.data_dir).startswith(str(project)) or str(cluster.data_dir).startswith("/var/lib/cityops")
