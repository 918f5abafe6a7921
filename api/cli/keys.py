"""`cityops keys …`: access keys and their roles."""

from __future__ import annotations

import typer
from rich.table import Table

from api.cli.common import console, run_guarded
from gis import keys as access_keys
from gis.db import connect
from gis.settings import get_settings

app = typer.Typer(help="Create, list and revoke access keys.", no_args_is_help=True)


@app.command()
def create(
    role: str = typer.Option(..., help=" | ".join(access_keys.ROLES)),
    district: list[str] = typer.Option([], "--district", help="GB/T 2260 code the key is limited to (repeatable)"),
    label: str = typer.Option(None, help="who or what holds the key"),
    unit: str = typer.Option(None, help="code of the responsible unit a field_unit key acts for (city.responsible_unit)"),
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    def action() -> None:
        with connect(get_settings()) as conn:
            key, key_id = access_keys.create_key(conn, role, district, label, unit)
            conn.commit()
        console.print(f"key {key_id} ({role}{', districts ' + ', '.join(district) if district else ''}) — shown once, keep it safe:")
        print(key)
    run_guarded(action)


@app.command("list")
def list_command() -> None:
    """List keys (never the keys themselves)."""
    def action() -> None:
        with connect(get_settings()) as conn:
            rows = access_keys.list_keys(conn)
        table = Table("id", "prefix", "role", "districts", "label", "created", "revoked")
        for row in rows:
            table.add_row(str(row["id"]), row["key_prefix"] + "…", row["role"], ", ".join(row["districts"]) or "all",
                          row["label"] or "", f"{row['created_at']:%Y-%m-%d %H:%M}",
                          f"{row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "")
        console.print(table)
    run_guarded(action)


@app.command()
def revoke(key_id: int = typer.Argument(..., help="id shown by `cityops keys list`")) -> None:
    """Revoke a key at once."""
    def action() -> None:
        with connect(get_settings()) as conn:
            access_keys.revoke_key(conn, key_id)
            conn.commit()
        console.print(f"key {key_id} revoked")
    run_guarded(action)
