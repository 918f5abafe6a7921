"""Alembic environment: runs on the connection that gis.migrate hands over (no alembic.ini)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table_schema="public", transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
