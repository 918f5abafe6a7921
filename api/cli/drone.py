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
from drone.ingest import ingest_orthophoto, make_display_rendition
from gis import orthophotos
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
    """Validate FILE, write its analysis and display COGs and catalogue it."""
    def action() -> None:
        if kind not in ("rgb", "dsm"):
            fail(f"--kind must be rgb or dsm, not {kind!r}")
        with _connect() as conn, console.status("checking the raster") as status:
            row = ingest_orthophoto(conn, get_settings(), file, kind=kind, name=name or file.name,
                                    captured_on=captured.date() if captured else None,
                                    progress=lambda step: status.update(step))
        console.print(f"orthophoto {row['id']} ({row['kind']}, {row['width']}×{row['height']} px, "
                      f"GSD {row['gsd_m']:.3f} m; analysis COG {row['file_bytes'] / 2**20:.1f} MiB, display COG "
                      f"{row['display_bytes'] / 2**20:.1f} MiB, zooms {row['display_minzoom']}–{row['display_maxzoom']})")
        print(row["id"])
    run_guarded(action)


@app.command()
def renditions(
    orthophoto: list[int] = typer.Option(None, "--id", help="only these orthophoto ids (repeatable)"),
    all_: bool = typer.Option(False, "--all", help="rewrite every display COG, not just the missing ones"),
) -> None:
    """Write the display COG (WebMercatorQuad, JPEG+mask for RGB) of orthophotos that lack one."""
    def action() -> None:
        with _connect() as conn:
            rows = orthophotos.listing(conn)
            wanted = [r for r in rows if (r["id"] in orthophoto if orthophoto else all_ or not r["display_path"])]
            missing = set(orthophoto or ()) - {r["id"] for r in rows}
            if missing:
                fail(f"no orthophoto with id {', '.join(map(str, sorted(missing)))}")
            with Progress(TextColumn("display COGs"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          TimeElapsedColumn(), console=console) as bar:
                task = bar.add_task("renditions", total=len(wanted))
                for row in wanted:
                    display = make_display_rendition(conn, get_settings(), row["id"])
                    bar.console.print(f"orthophoto {row['id']} ({row['kind']}): zooms {display['display_minzoom']}"
                                      f"–{display['display_maxzoom']}, {display['display_bytes'] / 2**20:.1f} MiB")
                    bar.advance(task)
        console.print(f"{len(wanted)} display COG(s) written")
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
        # Run here as a server's worker would (heartbeat included): if this process dies, a worker
        # picks the job up again; Ctrl-C cancels it.
        with Progress(TextColumn("detection job"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("detect", total=1.0)
            result = jobs.detect_here(conninfo(get_settings()), get_settings(), created_by=f"cli:{getpass.getuser()}",
                                      on_progress=lambda p: bar.update(task, completed=p), before_id=before,
                                      after_id=after, before_dsm_id=before_dsm, after_dsm_id=after_dsm)
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
