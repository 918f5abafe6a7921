"""`cityops case …`: the case workflow from the command line, acting as the key in --key
(or CITYOPS_KEY), with the same role and district checks as the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import psycopg
import typer
from psycopg.rows import dict_row
from rich.table import Table

from api.cli.common import console, run_guarded
from gis.db import conninfo
from gis.keys import Principal, authenticate, parse_bearer
from gis.settings import get_settings
from ops import alarms, cases

app = typer.Typer(help="File, dispatch, handle, check and close cases (案卷).", no_args_is_help=True)
KEY = typer.Option(..., "--key", envvar="CITYOPS_KEY", help="your access key (or CITYOPS_KEY)", show_default=False)


def _run(key: str | None, work: Callable[[psycopg.AsyncConnection, Principal | None], Awaitable]) -> object:
    async def main():
        async with await psycopg.AsyncConnection.connect(conninfo(get_settings()), row_factory=dict_row, autocommit=True) as conn:
            principal = None
            if key is not None:
                principal = await authenticate(conn, parse_bearer(f"Bearer {key}"))
            return await work(conn, principal)
    return asyncio.run(main())


def _print_case(case: dict) -> None:
    console.print(f"[bold]{case['case_no']}[/] (id {case['id']}) {case['state']} · {case['class_name'] or case['component_class_code']} · "
                  f"district {case['district_code']} · unit {case['responsible_unit_code'] or '— manual dispatch queue'}"
                  + (f" · deadline {case['deadline_at']:%Y-%m-%d %H:%M}" if case["deadline_at"] else "")
                  + (" · [red]OVERDUE[/]" if case["overdue"] else " · [yellow]warning[/]" if case["warning"] else ""), highlight=False)
    for event in case.get("events", []):
        extra = "; ".join(f"{k} {event[k]}" for k in ("note", "reason", "approver") if event.get(k))
        console.print(f"  {event['at']:%m-%d %H:%M}  {event['action'] or event['state']:<9} {event['actor'] or ''}  {extra}", highlight=False)


@app.command("list")
def list_command(key: str = KEY, state: str = typer.Option(None, help="only cases in this state"),
                 overdue: bool = typer.Option(False, help="only overdue cases"),
                 unrouted: bool = typer.Option(False, help="only the manual dispatch queue"),
                 limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Cases your key may see, newest first."""
    def action() -> None:
        rows = _run(key, lambda conn, p: cases.list_cases(conn, p, state=state, overdue=overdue or None, unrouted=unrouted, limit=limit))
        table = Table("id", "case no", "state", "class", "district", "unit", "deadline", "late")
        for r in rows:
            table.add_row(str(r["id"]), r["case_no"], r["state"], r["class_name"] or "", r["district_code"], r["responsible_unit_code"] or "—",
                          f"{r['deadline_at']:%m-%d %H:%M}" if r["deadline_at"] else "", "overdue" if r["overdue"] else "warning" if r["warning"] else "")
        console.print(table)
    run_guarded(action)


@app.command()
def show(case_id: int = typer.Argument(...), key: str = KEY) -> None:
    """A case and its history."""
    run_guarded(lambda: _print_case(_run(key, lambda conn, p: cases.get_case(conn, p, case_id))))


@app.command("open")
def open_command(lon: float = typer.Option(...), lat: float = typer.Option(...), event_class: str = typer.Option(..., help="4-digit event class"),
                 description: str = typer.Option(None), key: str = KEY) -> None:
    """Report a case at a point (信息采集); routed by its grid."""
    async def work(conn, principal):
        principal.require("dispatcher")
        where = await cases.route(conn, lon, lat)
        principal.require_district(where["district_code"])
        opened = await cases.open_case(conn, source="supervisor", lon=lon, lat=lat, event_class_code=event_class,
                                       description=description, actor=principal.name)
        return await cases.get_case(conn, principal, opened["id"])
    run_guarded(lambda: _print_case(_run(key, work)))


def _step_command(action: str):
    def command(case_id: int = typer.Argument(...), key: str = KEY, note: str = typer.Option(None),
                reason: str = typer.Option(None, help="why (return, void, extend, defer)"),
                unit: str = typer.Option(None, help="dispatch: the responsible unit's code"),
                hours: float = typer.Option(None, help="extend: working hours added"),
                passed: bool = typer.Option(None, "--passed/--failed", help="check: passed or back for rework"),
                evaluation: int = typer.Option(None, help="evaluate: 1-5"),
                photo: list[str] = typer.Option([], help="handle: link to a photo (repeatable)")) -> None:
        run_guarded(lambda: _print_case(_run(key, lambda conn, p: cases.transition(
            conn, p, case_id, action, note=note, reason=reason, unit_code=unit, hours=hours, passed=passed,
            evaluation=evaluation, photos=photo))))
    step = cases.STEPS[action]
    outcome = {"check": "checked (--passed) or processing (--failed: rework)", "extend": "same state, later deadline"}
    command.__doc__ = f"{step.title}: {' / '.join(step.from_states)} → {step.to_state or outcome[action]} ({step.role})"
    return command


for _action in cases.ACTIONS:
    app.command(_action)(_step_command(_action))


@app.command()
def sweep() -> None:
    """Mark silent sensors offline; warn and escalate (督办) late cases (the API does this every 30 s)."""
    async def work(conn, _principal):
        return {"offline": await alarms.mark_offline(conn), **await cases.sweep_deadlines(conn)}
    run_guarded(lambda: print(json.dumps(_run(None, work))))
