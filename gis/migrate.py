"""Apply the Alembic migrations to a database (no alembic.ini: the script folder is the package's)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from gis.db import open_connection
from gis.errors import DatabaseUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _engine(info: str):
    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(info), poolclass=NullPool)


def ensure_postgis(info: str) -> None:
    """Create the extension where we may; a clear one-line error where we may not."""
    with open_connection(info, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone():
            return
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone() is None:
            raise DatabaseUnavailable(
                "PostGIS is not installed on the database server: install postgresql-15-postgis-3"
            )
        try:
            conn.execute("CREATE EXTENSION postgis")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise DatabaseUnavailable(
                "the PostGIS extension is missing and this user may not create it: "
                "ask a superuser to run 'CREATE EXTENSION postgis' in this database"
            ) from exc


def upgrade(info: str, revision: str = "head") -> None:
    ensure_postgis(info)
    _run(info, command.upgrade, revision)


def downgrade(info: str, revision: str) -> None:
    _run(info, command.downgrade, revision)


def _run(info: str, action, revision: str) -> None:
    config = _config()
    with _engine(info).begin() as connection:
        config.attributes["connection"] = connection
        action(config, revision)


def current_revision(info: str) -> str | None:
    with _engine(info).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()
