"""The self-managed PostgreSQL 15 + PostGIS 3 cluster used when no CITYOPS_DATABASE_URL is set.

It lives in a project-local, git-ignored folder and listens only on a Unix socket, so it can
never clash with another server's TCP port. Streaming replicas of it (hot standbys made by
`pg_basebackup -R`) live beside it in `replicas/<name>/`, each on its own socket. As root, the
server runs as the `postgres` system user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gis.errors import DatabaseUnavailable, InvalidInput, NotFound
from gis.settings import Settings

SUPERUSER = "cityops"
SOCKET_PORT = 5432
# The kernel limits a Unix socket path to 107 bytes.
MAX_SOCKET_PATH = 100
REPLICA_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")

SERVER_SETTINGS = {
    "listen_addresses": "''",
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "effective_cache_size": "'8GB'",
    "max_wal_size": "'4GB'",
    "jit": "off",
    "log_min_messages": "warning",
    "log_min_duration_statement": "-1",
}


def _postgres_bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    preferred = [c for c in candidates if c.parts[-3] == "15"] or candidates
    if not preferred:
        raise DatabaseUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: "
            "install postgresql-15-postgis-3 (the README's run command does)"
        )
    return preferred[0].parent


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _server_user() -> str | None:
    """The OS user that owns and runs the cluster; None means the current user."""
    if not _running_as_root():
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise DatabaseUnavailable(
            "running as root but there is no 'postgres' system user: install postgresql-15"
        ) from exc
    return "postgres"


def _as_server_user(argv: list[str]) -> list[str]:
    user = _server_user()
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _reachable_by_server_user(path: Path) -> bool:
    user = _server_user()
    if user is None:
        return True
    probe = path if path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(probe)]).returncode == 0


@dataclass(frozen=True)
class Cluster:
    data_dir: Path
    socket_dir: Path

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def conninfo(self, dbname: str) -> str:
        return f"host={self.socket_dir} port={SOCKET_PORT} user={SUPERUSER} dbname={dbname}"

    # -- lifecycle -------------------------------------------------------------------------
    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        result = subprocess.run(
            _as_server_user([str(_postgres_bin_dir() / "pg_ctl"), "status", "-D", str(self.data_dir)]),
            capture_output=True,
            text=True,
        )
        return result.returncode == 0

    def initialise(self) -> None:
        if self.is_initialised():
            return
        self._make_dir(self.data_dir, mode=0o700)
        self._make_dir(self.socket_dir, mode=0o755)
        self._run(
            [
                str(_postgres_bin_dir() / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            "initdb",
        )
        with open(self.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")
            conf.write(f"port = {SOCKET_PORT}\n")

    def start(self) -> None:
        self.initialise()
        if self.is_running():
            return
        self._make_dir(self.socket_dir, mode=0o755)
        self._make_file(self.log_file)
        self._run(
            [
                str(_postgres_bin_dir() / "pg_ctl"),
                "start", "-w", "-t", "60",
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
            ],
            "pg_ctl start",
        )

    def stop(self) -> None:
        if not self.is_running():
            return
        self._run(
            [str(_postgres_bin_dir() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data_dir)],
            "pg_ctl stop",
        )

    # -- streaming replicas ------------------------------------------------------------------
    @property
    def replicas_dir(self) -> Path:
        return self.data_dir.parent / "replicas"

    def replica(self, name: str) -> Cluster:
        """The streaming replica called `name` (it may not exist yet): its own data folder and socket."""
        if not REPLICA_NAME.fullmatch(name):
            raise InvalidInput(f"a replica name is 1-32 letters, digits or '_', not {name!r}")
        base = self.replicas_dir / name
        return Cluster(data_dir=base / "pgdata", socket_dir=_socket_dir_for(base))

    def replica_names(self) -> list[str]:
        if not self.replicas_dir.is_dir():
            return []
        return sorted(p.name for p in self.replicas_dir.iterdir() if (p / "pgdata" / "standby.signal").exists())

    def add_replica(self, name: str, *, apply_delay_ms: int = 0) -> Cluster:
        """A hot standby streaming from this cluster: a base backup (`pg_basebackup -R`, WAL streamed
        alongside) in its own folder, listening on its own socket, started. `apply_delay_ms` holds
        replay back (`recovery_min_apply_delay`), which is how tests make a lagging replica."""
        if not self.is_running():
            raise DatabaseUnavailable("start the primary first (cityops db start)")
        replica = self.replica(name)
        if replica.is_initialised():
            raise InvalidInput(f"replica {name!r} exists already ({replica.data_dir})")
        self._make_dir(replica.data_dir.parent, mode=0o755)
        self._make_dir(replica.socket_dir, mode=0o755)
        self._run([str(_postgres_bin_dir() / "pg_basebackup"), "-D", str(replica.data_dir), "-R", "-X", "stream",
                   "-c", "fast", "-h", str(self.socket_dir), "-p", str(SOCKET_PORT), "-U", SUPERUSER,
                   "--no-password"], "pg_basebackup")
        # postgresql.auto.conf came with the backup and names the primary's socket; later lines win.
        with open(replica.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write(f"unix_socket_directories = '{replica.socket_dir}'\n")
            conf.write("hot_standby_feedback = on\n")
            conf.write(f"recovery_min_apply_delay = '{int(apply_delay_ms)}ms'\n")
        replica.start()
        return replica

    def remove_replica(self, name: str) -> None:
        replica = self.replica(name)
        if not replica.data_dir.parent.exists():
            raise NotFound(f"no replica {name!r}; replicas: {', '.join(self.replica_names()) or 'none'}")
        replica.stop()
        shutil.rmtree(replica.data_dir.parent)

    # -- helpers ---------------------------------------------------------------------------
    def _make_dir(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        user = _server_user()
        if user:
            shutil.chown(path, user, user)
        path.chmod(mode)

    def _make_file(self, path: Path) -> None:
        path.touch(exist_ok=True)
        user = _server_user()
        if user:
            shutil.chown(path, user, user)

    def _run(self, argv: list[str], what: str) -> None:
        result = subprocess.run(_as_server_user(argv), capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            tail = detail[-1] if detail else f"exit code {result.returncode}"
            raise DatabaseUnavailable(f"{what} failed: {tail} (log: {self.log_file})")


def cluster_for(settings: Settings) -> Cluster:
    """Where the project's own cluster lives: in the state folder, unless the server user
    cannot reach it (e.g. a checkout under /root), then in a per-project folder under /var/lib."""
    base = settings.state_dir
    if not _reachable_by_server_user(base):
        digest = hashlib.sha1(str(base).encode()).hexdigest()[:12]
        base = Path("/var/lib/cityops") / digest
    return Cluster(data_dir=base / "pgdata", socket_dir=_socket_dir_for(base))


def _socket_dir_for(base: Path) -> Path:
    socket_dir = base / "run"
    if len(str(socket_dir)) + len(f"/.s.PGSQL.{SOCKET_PORT}") > MAX_SOCKET_PATH:
        digest = hashlib.sha1(str(base).encode()).hexdigest()[:12]
        socket_dir = Path("/tmp") / f"cityops-{digest}"
    return socket_dir
