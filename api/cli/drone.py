"""`cityops drone …`: ingest orthophotos, run change detection, review candidates."""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.cli.common import console, fail, run_guarded
from drone import jobs, review
from drone.ingest import ingest_orthophoto
from gis.db import conninfo, open_connection
from gis.keys import Principal
from gis.settings import get_settings

app = typer.Typer(help="Drone orthophotos, change detection and the review queue.", no_args_is_help=True)


def _connect():
    return open_connection(conninfo(get_settings()), autocommit=True)


@app.command()
def ingest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="a georeferenced GeoTIFF (or any raster GDAL reads)"),
    kind: str = typer.Option("rgb", help="rgb | dsm"),
    captured: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="flight date, YYYY-MM-DD"),
    name: str = typer.Option(None, help="catalogue name (default: the file name)"),
) -> None:
    """Validate FILE, convert it to a Cloud-Optimized GeoTIFF and catalogue it."""
    def action() -> None:
        if kind not in ("rgb", "dsm"):
            fail(f"--kind must be rgb or dsm, not {kind!r}")
        with _connect() as conn, console.status("checking the raster") as status:
            row = ingest_orthophoto(conn, get_settings(), file, kind=kind, name=name or file.name,
                                    captured_on=captured.date() if captured else None,
                                    progress=lambda step: status.update(step))
        console.print(f"orthophoto {row['id']} ({row['kind']}, {row['width']}×{row['height']} px, "
                      f"GSD {row['gsd_m']:.3f} m, {row['file_bytes'] / 2**20:.1f} MiB COG)")
        print(row["id"])
    run_guarded(action)


@app.command()
def detect(
    before: int = typer.Option(..., help="orthophoto id of the earlier flight"),
    after: int = typer.Option(..., help="orthophoto id of the later flight"),
    before_dsm: int = typer.Option(None, help="DSM id of the earlier flight"),
    after_dsm: int = typer.Option(None, help="DSM id of the later flight"),
) -> None:
    """Run change detection now, in this process, and queue the candidates for review."""
    def action() -> None:
        with _connect() as conn:
            with conn.transaction():  # submitted and claimed at once: a server's worker never sees it queued
                job = jobs.submit(conn, before_id=before, after_id=after, before_dsm_id=before_dsm,
                                  after_dsm_id=after_dsm, created_by=f"cli:{getpass.getuser()}")
                jobs.claim(conn, job["id"])
            with Progress(TextColumn(f"detection job {job['id']}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                          TimeElapsedColumn(), console=console) as bar:
                task = bar.add_task("detect", total=1.0)
                try:
                    result = jobs.run(conn, get_settings(), job["id"],
                                      on_progress=lambda p: bar.update(task, completed=p))
                except KeyboardInterrupt:
                    jobs.cancel(conn, job["id"])
                    raise
        if result["state"] != "succeeded":
            fail(f"job {result['id']} {result['state']}: {result['error']}")
        reg = result["registration"]
        console.print(f"job {result['id']}: {result['candidates_found']} candidates, {result['candidates_queued']} "
                      f"queued for review; dropped {result['dropped_registered']} registered, "
                      f"{result['dropped_known_illegal']} already recorded, {result['dropped_dismissed']} dismissed "
                      f"before, {result['dropped_already_queued']} already queued, {result['dropped_outside_city']} "
                      f"outside the city; registration residual {result['residual_px']:.2f} px "
                      f"({reg['inliers']} of {reg['tie_points']} tie points agree, overlap {reg['overlap_share']:.0%}, "
                      f"registered on {reg['source']}); change map orthophoto {result['change_map_id']}")
    run_guarded(action)


@app.command()
def candidates(
    status: str = typer.Option("pending", help="pending | confirmed | dismissed"),
    detection: int = typer.Option(None, help="only this detection job's candidates"),
) -> None:
    """List change candidates, best score first."""
    def action() -> None:
        with _connect() as conn:
            found = review.list_candidates(conn, status=status, detection_id=detection)
        table = Table("id", "score", "area m²", "height gain m", "district", "before → after", "status", "reviewer")
        for f in found["features"]:
            p = f["properties"]
            gain = p["height_gain_m"]
            table.add_row(str(f["id"]), f"{p['score']:.2f}", f"{p['area_m2']:.1f}",
                          "" if gain is None else f"{gain:.1f}", p["district_code"],
                          f"{p['before_id']} → {p['after_id']}", p["status"], p["reviewer"] or "")
        console.print(table)
    run_guarded(action)


@app.command("review")
def review_command(
    candidate_id: int = typer.Argument(..., help="id shown by `cityops drone candidates`"),
    confirm: bool = typer.Option(False, "--confirm", help="it is an illegal building: record it"),
    dismiss: bool = typer.Option(False, "--dismiss", help="it is not: never queue it again"),
    note: str = typer.Option(None, help="why"),
    reviewer: str = typer.Option(None, help="who decides (default: cli:<your login>)"),
) -> None:
    """Confirm or dismiss a pending candidate."""
    def action() -> None:
        if confirm == dismiss:
            fail("give exactly one of --confirm or --dismiss")
        # Whoever can reach the database from this shell is an operator, not a district-scoped key.
        operator = Principal(key_id=0, label=reviewer or f"cli:{getpass.getuser()}", role="admin", districts=())
        with _connect() as conn:
            decided = review.decide(conn, operator, candidate_id, "confirm" if confirm else "dismiss", note)
        p = decided["properties"]
        record = f"; illegal-building record {p['illegal_building_id']}" if p["illegal_building_id"] else ""
        console.print(f"candidate {candidate_id} {p['status']} by {p['reviewer']}{record}")
    run_guarded(action)
