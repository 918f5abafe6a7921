"""`cityops jobs …`: the background jobs (imports, exports, change detections, tile archives and
seeding) of every process, and a worker pool that runs them without a web server."""

from __future__ import annotations

import signal
import threading

import typer
from rich.table import Table

from api.cli.common import console, run_guarded
from api.job_kinds import JOB_KINDS
from gis import jobs
from gis.db import connect, conninfo
from gis.settings import JobSettings, get_settings, settings_of

app = typer.Typer(help="List, cancel and run background jobs (imports, exports, change detections, "
                       "tile archives and seeding).", no_args_is_help=True)


@app.command("list")
def list_command(kind: str = typer.Option(None, help="import | export | detection | tile_archive | tile_seed"),
                 limit: int = typer.Option(30, help="newest first")) -> None:
    """The newest jobs with their state, progress and worker."""
    def action() -> None:
        with connect(get_settings(), autocommit=True) as conn:
            rows = jobs.list_jobs(conn, kind=kind, limit=limit)
        table = Table("id", "kind", "state", "progress", "attempts", "worker", "created by", "created", "error")
        for row in rows:
            table.add_row(str(row["id"]), row["kind"], row["state"], f"{row['progress']:.0%}", str(row["attempts"]),
                          row["worker"] or "", row["created_by"], f"{row['created_at']:%Y-%m-%d %H:%M}", row["error"] or "")
        console.print(table)
    run_guarded(action)


@app.command()
def cancel(job_id: int) -> None:
    """Cancel a job: a queued one at once, a running one at its next progress report."""
    def action() -> None:
        with connect(get_settings(), autocommit=True) as conn:
            row = jobs.cancel(conn, job_id)
        console.print(f"job {job_id}: {'cancelled' if row['state'] == 'cancelled' else 'asked to stop'}")
    run_guarded(action)


@app.command()
def work(workers: int = typer.Option(None, help="worker threads (default CITYOPS_JOB_WORKERS)")) -> None:
    """Run queued jobs until interrupted (more workers on more machines share the queue)."""
    def action() -> None:
        settings, tuning = get_settings(), settings_of(JobSettings)
        pool = jobs.WorkerPool(conninfo(settings), settings, JOB_KINDS, workers=workers or tuning.job_workers,
                               stale_after_s=tuning.job_stale_s, sweep_every_s=tuning.job_sweep_s)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        pool.start()
        console.print(f"{pool.workers} job workers running; Ctrl-C stops them (running jobs go back to the queue)")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            pool.stop()
    run_guarded(action)
