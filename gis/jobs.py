"""The one job system: every background job (an import, an export, a change detection, a tile
archive, a tile seeding) is a row of `city.job`, the only module that writes it.

- submit: a queued row (the kind's input in `payload`);
- claim: a worker takes the next queued job with `FOR UPDATE SKIP LOCKED`, kinds with fewer
  running jobs first, then submitters with fewer (fair queuing: a long import does not hold back a
  detection, nor one user's batch another's upload), oldest first;
- heartbeat: while a job runs, a thread of its process stamps `heartbeat_at` every few seconds and
  hands a cancel request to the job;
- recovery: a running job whose worker died (no heartbeat for `stale_after_s`, or its process on
  this machine is gone) is queued again for the next worker — or failed with the reason after
  `MAX_ATTEMPTS` — and the partial files of the dead run are removed; every worker pool sweeps
  for them when it starts and while it polls, and every `sweep_every_s` (and when it starts) removes
  the files no open job accounts for (`sweep_orphans`: expired API exports, dead uploads);
- cancel, progress and the end state go into the row, so the CLI and the API see the same job.

A kind's runner does the work and returns its result (a dict kept in `result`); it may instead end
the job itself, inside its own transaction, with `job.succeed(conn, …)`, so that the job's success
and what it wrote commit together — and if the job was meanwhile given to another worker (this one
was taken for dead), nothing of this run commits. It raises `JobCancelled` when asked to stop.
A runner that writes a file (an export, a tile archive) writes it with `written_whole`, and its
kind's `scratch` lists `partial_files`: the file is whole or absent, and a dead run's part is swept.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from gis.db import open_connection
from gis.errors import CityOpsError, Conflict, NotFound

log = logging.getLogger("cityops.jobs")

MAX_ATTEMPTS = 3
HEARTBEAT_S = 2.0
PROGRESS_EVERY_S = 0.5
COLUMNS = ("id, kind, state, payload, result, progress, done, total, phase, cancel_requested, error, attempts, worker, "
           "created_by, created_at, updated_at, started_at, heartbeat_at, finished_at")


class JobCancelled(CityOpsError):
    """The job was cancelled (or its worker is stopping) and stopped where it was."""


class JobTakenOver(CityOpsError):
    """This worker was taken for dead and the job given to another: what this run did must not commit."""


@dataclass
class Job:
    """A claimed job as its runner sees it: the row, a connection of its own (autocommit), and the
    events that ask it to stop."""

    row: dict
    conn: psycopg.Connection
    conninfo: str = ""  # for a runner that needs a connection of its own (a long transaction)
    cancel: threading.Event = field(default_factory=threading.Event)
    _reported: float = 0.0

    @property
    def id(self) -> int:
        return self.row["id"]

    @property
    def payload(self) -> dict:
        return self.row["payload"]

    def succeed(self, conn: psycopg.Connection, result: dict, *, done: int | None = None, phase: str | None = None) -> None:
        """Mark the job succeeded in the caller's transaction (so it commits with the work), if it is
        still this worker's and nobody asked to cancel it; otherwise raise `JobCancelled` or
        `JobTakenOver`, which roll that transaction back. A cancel that was accepted is honoured even
        when it arrives after the last progress report (a fast job never saw it)."""
        if finish(conn, self.id, "succeeded", worker=self.row["worker"], result=result, done=done, phase=phase,
                  unless_cancelled=True):
            return
        row = conn.execute("SELECT cancel_requested FROM city.job WHERE id = %s AND state = 'running' AND worker = %s",
                           [self.id, self.row["worker"]]).fetchone()
        if row is not None and row["cancel_requested"]:
            raise JobCancelled(f"job {self.id} was cancelled")
        raise JobTakenOver(f"job {self.id} was given to another worker; this run's work is rolled back")

    def progress(self, fraction: float | None = None, *, done: int | None = None, total: int | None = None,
                 phase: str | None = None, force: bool = False, check_cancel: bool = True) -> None:
        """Record progress (throttled) and stop here if the job was cancelled (unless the caller
        watches `cancel` itself)."""
        if check_cancel and self.cancel.is_set():
            raise JobCancelled(f"job {self.id} was cancelled")
        now = time.monotonic()
        if not force and now - self._reported < PROGRESS_EVERY_S:
            return
        self._reported = now
        self.conn.execute(
            "UPDATE city.job SET progress = coalesce(%s, progress), done = coalesce(%s, done), "
            "total = coalesce(%s, total), phase = coalesce(%s, phase), updated_at = now() WHERE id = %s",
            [None if fraction is None else min(max(fraction, 0.0), 1.0), done, total, phase, self.id])


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Callable[[Job, Any], dict | None]  # (job, settings) → result
    max_running: int = 1  # per worker pool; a detection already uses both cores
    # files of a run that did not end (partial outputs), removed when its worker died
    scratch: Callable[[dict, Any], Iterable[Path]] = lambda row, settings: ()
    # files the job owns (an upload), removed once it has ended, however it ended
    owned: Callable[[dict, Any], Iterable[Path]] = lambda row, settings: ()
    # files of this kind that no open job (queued or running) accounts for, given those jobs' rows:
    # left by a process that died before its job row existed or after it ended
    orphans: Callable[[list[dict], Any], Iterable[Path]] = lambda open_rows, settings: ()


@contextmanager
def written_whole(job_id: int, target: Path) -> Iterator[Path]:
    """A partial file next to `target` for job `job_id` to write, renamed to `target` once the block
    ends without error (atomic: `target` is whole or absent), removed otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f"{_partial_prefix(job_id, target)}{uuid.uuid4().hex[:8]}{target.suffix}"
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def partial_files(job_id: int, target: Path) -> list[Path]:
    """The partial files runs of job `job_id` left next to `target` (a kind's `scratch`)."""
    return list(target.parent.glob(f"{_partial_prefix(job_id, target)}*")) if target.parent.is_dir() else []


def _partial_prefix(job_id: int, target: Path) -> str:
    return f".{target.stem}.job{job_id}-"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- the row -----------------------------------------------------------------------------------

SUBMIT_SQL = f"INSERT INTO city.job (kind, payload, created_by) VALUES (%s, %s, %s) RETURNING {COLUMNS}"


def submit_params(kind: str, payload: dict, created_by: str) -> list:
    """Parameters of SUBMIT_SQL (async callers run it on their own connection)."""
    return [kind, json.dumps(payload, ensure_ascii=False, default=str), created_by]


def submit(conn: psycopg.Connection, kind: str, payload: dict, created_by: str) -> dict:
    return conn.execute(SUBMIT_SQL, submit_params(kind, payload, created_by)).fetchone()


def get(conn: psycopg.Connection, job_id: int, kind: str | None = None) -> dict | None:
    """The job `job_id` (of `kind`, when given), or None."""
    return conn.execute(f"SELECT {COLUMNS} FROM city.job WHERE id = %s AND (%s::text IS NULL OR kind = %s)",
                        [job_id, kind, kind]).fetchone()


def list_jobs(conn: psycopg.Connection, *, kind: str | None = None, limit: int = 50) -> list[dict]:
    return conn.execute(f"SELECT {COLUMNS} FROM city.job WHERE %(kind)s::text IS NULL OR kind = %(kind)s "
                        "ORDER BY id DESC LIMIT %(limit)s", {"kind": kind, "limit": limit}).fetchall()


def cancel(conn: psycopg.Connection, job_id: int, kind: str | None = None, *, what: str = "job") -> dict:
    """A queued job is cancelled at once; a running one stops at its next progress report."""
    with conn.transaction():
        row = conn.execute("SELECT state FROM city.job WHERE id = %s AND (%s::text IS NULL OR kind = %s) FOR UPDATE",
                           [job_id, kind, kind]).fetchone()
        if row is None:
            raise NotFound(f"no {what} with id {job_id}")
        if row["state"] not in ("queued", "running"):
            raise Conflict(f"job {job_id} has already {row['state']}; nothing to cancel")
        return conn.execute(
            "UPDATE city.job SET cancel_requested = true, updated_at = now(), "
            "state = CASE state WHEN 'queued' THEN 'cancelled' ELSE state END, "
            f"finished_at = CASE state WHEN 'queued' THEN now() END WHERE id = %s RETURNING {COLUMNS}",
            [job_id]).fetchone()


def claim(conn: psycopg.Connection, kinds: Iterable[str], worker: str, job_id: int | None = None) -> dict | None:
    """Take the next queued job of these kinds for `worker`: the kind with the fewest running jobs
    first, then the submitter with the fewest, then the oldest; `job_id` takes that one job."""
    return conn.execute(f"""
        UPDATE city.job SET state = 'running', worker = %(worker)s, attempts = attempts + 1, started_at = now(),
                            heartbeat_at = now(), updated_at = now(), progress = 0, done = 0, phase = NULL
        WHERE id = (SELECT q.id FROM city.job q
                    WHERE q.state = 'queued' AND q.kind = ANY(%(kinds)s) AND (%(id)s::bigint IS NULL OR q.id = %(id)s)
                    ORDER BY (SELECT count(*) FROM city.job r WHERE r.state = 'running' AND r.kind = q.kind),
                             (SELECT count(*) FROM city.job r WHERE r.state = 'running' AND r.created_by = q.created_by),
                             q.id
                    LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING {COLUMNS}""", {"kinds": list(kinds), "worker": worker, "id": job_id}).fetchone()


def finish(conn: psycopg.Connection, job_id: int, state: str, *, worker: str, result: dict | None = None,
           error: str | None = None, done: int | None = None, phase: str | None = None,
           unless_cancelled: bool = False) -> bool:
    """End a job `worker` runs (in the caller's transaction, if it has one); False if it is not
    running there any more (ended, or requeued and claimed by another worker), or if
    `unless_cancelled` and a cancel was asked for."""
    return conn.execute(
        "UPDATE city.job SET state = %s, result = coalesce(%s, result), error = %s, worker = NULL, "
        "progress = CASE WHEN %s = 'succeeded' THEN 1 ELSE progress END, done = coalesce(%s, done), "
        "phase = coalesce(%s, phase), updated_at = now(), finished_at = now() "
        "WHERE id = %s AND state = 'running' AND worker = %s AND NOT (%s AND cancel_requested)",
        [state, None if result is None else json.dumps(result, ensure_ascii=False, default=str), error,
         state, done, phase, job_id, worker, unless_cancelled]).rowcount == 1


def _requeue(conn: psycopg.Connection, job_id: int, worker: str, reason: str) -> dict | None:
    """Queue a running job again (or fail it after MAX_ATTEMPTS, or cancel it if that was asked)."""
    return conn.execute(f"""
        UPDATE city.job SET worker = NULL, heartbeat_at = NULL, updated_at = now(), progress = 0, done = 0, phase = NULL,
               state = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= {MAX_ATTEMPTS} THEN 'failed' ELSE 'queued' END,
               error = CASE WHEN cancel_requested THEN %(reason)s
                            WHEN attempts >= {MAX_ATTEMPTS} THEN %(reason)s || '; gave up after ' || attempts || ' attempts'
                            ELSE error END,
               finished_at = CASE WHEN cancel_requested OR attempts >= {MAX_ATTEMPTS} THEN now() END
        WHERE id = %(id)s AND state = 'running' AND worker = %(worker)s RETURNING {COLUMNS}""",
                        {"id": job_id, "worker": worker, "reason": reason}).fetchone()


def _process_gone(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover(conn: psycopg.Connection, kinds: dict[str, JobKind], settings: Any, stale_after_s: float) -> list[dict]:
    """Queue again (or fail) the running jobs whose worker died, and remove that run's files."""
    recovered = []
    rows = conn.execute("SELECT id, kind, worker, payload, heartbeat_at < now() - make_interval(secs => %s) AS stale "
                        "FROM city.job WHERE state = 'running' AND kind = ANY(%s)",
                        [stale_after_s, list(kinds)]).fetchall()
    for row in rows:
        if row["worker"] == worker_name() or not (row["stale"] or _process_gone(row["worker"])):
            continue
        reason = f"its worker {row['worker']} stopped before finishing"
        ended = _requeue(conn, row["id"], row["worker"], reason)
        if ended is None:
            continue
        log.warning("job %s (%s): %s; now %s", row["id"], row["kind"], reason, ended["state"])
        kind = kinds[row["kind"]]
        _remove(kind.scratch(ended, settings))
        if ended["state"] != "queued":
            _remove(kind.owned(ended, settings))
        recovered.append(ended)
    return recovered


def sweep_orphans(conn: psycopg.Connection, kinds: dict[str, JobKind], settings: Any) -> None:
    """Remove the files no open job accounts for (run by every worker pool when it starts and every
    `sweep_every_s`: several pools sweeping at once remove nothing an open job needs)."""
    for kind in kinds.values():
        open_rows = conn.execute(f"SELECT {COLUMNS} FROM city.job WHERE kind = %s AND state IN ('queued', 'running')",
                                 [kind.name]).fetchall()
        orphans = list(kind.orphans(open_rows, settings))
        if orphans:
            log.warning("removing %d orphaned %s files: %s", len(orphans), kind.name, ", ".join(map(str, orphans[:5])))
            _remove(orphans)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            if path.is_dir():
                for child in sorted(path.rglob("*"), reverse=True):
                    child.rmdir() if child.is_dir() else child.unlink()
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            log.exception("could not remove %s", path)


# -- running -----------------------------------------------------------------------------------

class Heartbeat(threading.Thread):
    """Stamps the running jobs of this process and passes cancel requests to them."""

    def __init__(self, conninfo: str):
        super().__init__(name="cityops-job-heartbeat", daemon=True)
        self.conninfo = conninfo
        self.jobs: dict[int, Job] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job

    def remove(self, job: Job) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)

    def run(self) -> None:
        conn = None
        while not self.stopping.wait(HEARTBEAT_S):
            with self.lock:
                running = dict(self.jobs)
            if not running:
                continue
            try:
                conn = conn if conn is not None and not conn.closed else open_connection(self.conninfo, autocommit=True)
                for row in conn.execute("UPDATE city.job SET heartbeat_at = now() WHERE id = ANY(%s) AND state = 'running' "
                                        "AND worker = %s RETURNING id, cancel_requested",
                                        [list(running), worker_name()]).fetchall():
                    if row["cancel_requested"]:
                        running[row["id"]].cancel.set()
            except (CityOpsError, psycopg.Error):
                log.exception("job heartbeat lost its database connection; retrying")
                conn = None
        if conn is not None:
            conn.close()


def execute(conn: psycopg.Connection, kind: JobKind, row: dict, settings: Any, heartbeat: Heartbeat,
            stop: threading.Event | None = None, on_progress: Callable[[Job], None] | None = None) -> dict:
    """Run a claimed job to its end; every outcome is written to its row, which is returned.
    Setting `stop` (the worker is shutting down) hands the job back to the queue."""
    job = Job(row, conn, heartbeat.conninfo)
    if on_progress:
        job.progress = _observed(job.progress, job, on_progress)  # type: ignore[method-assign]
    heartbeat.add(job)
    watcher = _StopWatcher(stop, job.cancel)
    requeue, mine = False, row["worker"]
    try:
        result = kind.run(job, settings)
        finish(conn, job.id, "succeeded", worker=mine, result=result)
    except JobTakenOver:
        log.warning("%s job %s was given to another worker; this run rolled back", kind.name, job.id)
    except JobCancelled as exc:
        if stop is not None and stop.is_set():
            requeue = True
        else:
            finish(conn, job.id, "cancelled", worker=mine, error=str(exc))
    except CityOpsError as exc:
        finish(conn, job.id, "failed", worker=mine, error=str(exc))
    except Exception as exc:  # a bug or an I/O failure: the row must still say the job ended
        log.exception("%s job %s failed", kind.name, job.id)
        finish(conn, job.id, "failed", worker=mine, error=f"internal error: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:  # Ctrl-C on the CLI: a cancel, not a dead worker
        finish(conn, job.id, "cancelled", worker=mine, error="interrupted")
        raise
    finally:
        watcher.done()
        heartbeat.remove(job)
    if requeue:
        conn.execute("UPDATE city.job SET state = 'queued', worker = NULL, heartbeat_at = NULL, attempts = attempts - 1, "
                     "progress = 0, done = 0, phase = NULL, updated_at = now() WHERE id = %s AND worker = %s", [job.id, mine])
        _remove(kind.scratch(row, settings))
    else:
        _remove(kind.owned(row, settings))
    return conn.execute(f"SELECT {COLUMNS} FROM city.job WHERE id = %s", [job.id]).fetchone()


def _observed(report: Callable[..., None], job: Job, observer: Callable[[Job], None]) -> Callable[..., None]:
    def progress(fraction: float | None = None, **kwargs: Any) -> None:
        report(fraction, **kwargs)
        job.row["progress"] = fraction if fraction is not None else job.row.get("progress")
        observer(job)
    return progress


class _StopWatcher:
    """Turns a worker's stop request into the job's cancel event while the job runs."""

    def __init__(self, stop: threading.Event | None, cancel: threading.Event):
        self.finished = threading.Event()
        if stop is not None:
            threading.Thread(target=self._watch, args=(stop, cancel), daemon=True).start()

    def _watch(self, stop: threading.Event, cancel: threading.Event) -> None:
        while not self.finished.is_set():
            if stop.wait(0.5):
                cancel.set()
                return

    def done(self) -> None:
        self.finished.set()


def run_here(conninfo: str, kind: JobKind, settings: Any, submit_job: Callable[[psycopg.Connection], dict],
             on_progress: Callable[[Job], None] | None = None) -> dict:
    """Submit a job and run it in this process (the CLI), with the same row, heartbeat and
    recovery as a server's worker: if this process dies, a worker picks the job up. Submitted
    and claimed in one transaction, so no worker takes it in between."""
    heartbeat = Heartbeat(conninfo)
    heartbeat.start()
    try:
        with open_connection(conninfo, autocommit=True) as conn:
            with conn.transaction():
                row = claim(conn, [kind.name], worker_name(), submit_job(conn)["id"])
            return execute(conn, kind, row, settings, heartbeat, on_progress=on_progress)
    finally:
        heartbeat.stop()


class WorkerPool:
    """A few worker threads that claim and run jobs of the registered kinds until stopped."""

    POLL_S = 1.0

    def __init__(self, conninfo: str, settings: Any, kinds: Iterable[JobKind], *, workers: int, stale_after_s: float,
                 sweep_every_s: float):
        self.conninfo, self.settings = conninfo, settings
        self.kinds = {kind.name: kind for kind in kinds}
        self.workers, self.stale_after_s, self.sweep_every_s = workers, stale_after_s, sweep_every_s
        self.swept_at = time.monotonic()
        self.stopping, self.woken = threading.Event(), threading.Event()
        self.heartbeat = Heartbeat(conninfo)
        self.threads: list[threading.Thread] = []
        self.running: dict[str, int] = {name: 0 for name in self.kinds}
        self.lock = threading.Lock()

    def start(self) -> None:
        with open_connection(self.conninfo, autocommit=True) as conn:
            recover(conn, self.kinds, self.settings, self.stale_after_s)
            sweep_orphans(conn, self.kinds, self.settings)
        self.swept_at = time.monotonic()
        self.heartbeat.start()
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"cityops-job-worker-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def wake(self) -> None:
        self.woken.set()

    def stop(self, timeout: float = 30) -> None:
        self.stopping.set()
        self.woken.set()
        for thread in self.threads:
            thread.join(timeout)
        self.heartbeat.stop()

    def _claim(self, conn: psycopg.Connection) -> dict | None:
        with self.lock:  # one claim at a time in this pool, so max_running holds
            free = [name for name, kind in self.kinds.items() if self.running[name] < kind.max_running]
            row = claim(conn, free, worker_name()) if free else None
            if row is not None:
                self.running[row["kind"]] += 1
            return row

    def _sweep_when_due(self, conn: psycopg.Connection) -> None:
        """Sweep orphaned files when `sweep_every_s` has passed: one worker of the pool does it."""
        with self.lock:
            if time.monotonic() - self.swept_at < self.sweep_every_s:
                return
            self.swept_at = time.monotonic()
        try:
            sweep_orphans(conn, self.kinds, self.settings)
        except OSError:  # e.g. another process's sweep removed a folder this one was looking at
            log.exception("the sweep of orphaned job files failed; it runs again in %s s", self.sweep_every_s)

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                with open_connection(self.conninfo, autocommit=True) as conn:
                    while not self.stopping.is_set():
                        recover(conn, self.kinds, self.settings, self.stale_after_s)
                        self._sweep_when_due(conn)
                        row = self._claim(conn)
                        if row is None:
                            self.woken.wait(self.POLL_S)
                            self.woken.clear()
                            continue
                        try:
                            execute(conn, self.kinds[row["kind"]], row, self.settings, self.heartbeat, self.stopping)
                        finally:
                            with self.lock:
                                self.running[row["kind"]] -= 1
                        self.woken.set()  # another worker may take what this one could not
            except (CityOpsError, psycopg.Error):
                log.exception("job worker lost its database connection; retrying")
                self.stopping.wait(5 * self.POLL_S)
