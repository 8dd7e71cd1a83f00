"""A throwaway PostgreSQL cluster for the tests that need a real server.

``postgres_cluster`` (session-scoped) runs Debian's ``postgresql`` server binaries
(``/usr/lib/postgresql/*/bin``) on a fresh data directory in a temp dir:

- ``initdb`` runs as a non-root user: the current one, or under root the system user
  ``ultrathink-pg`` (created with ``useradd --system`` when missing; every server command
  runs through ``runuser -u ultrathink-pg --``), who owns the temp dir;
- the server listens on 127.0.0.1 only, on a free port, with its unix socket inside the temp
  dir, and ``pg_hba.conf`` trusts 127.0.0.1 and nothing else;
- readiness is ``pg_isready`` polled against a generous deadline (a busy machine is slow,
  never wrong); a port taken between choosing and binding it is retried with another;
- teardown is ``pg_ctl stop -m fast`` and the temp dir is removed.

``postgres_url`` is the URL of a database created on it (``postgresql://USER@127.0.0.1:PORT/
ultrathink``); ``postgres_database`` gives each test a fresh database of its own. Without the
server binaries the tests that use them are skipped, saying how to install them. A test
module registers them by binding them to module names, e.g.
``postgres_url = pg_fixtures.postgres_url`` (no conftest change needed).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: the system user that owns and runs the cluster when the tests run as root
PG_USER = "ultrathink-pg"
DATABASE = "ultrathink"
#: bounds for a slow, busy machine; the loops end as soon as the server answers
START_TIMEOUT_S = 180.0
COMMAND_TIMEOUT_S = 300.0
POLL_S = 0.1
PORT_ATTEMPTS = 5
TOOLS = ("initdb", "pg_ctl", "pg_isready")


def server_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/VERSION/bin`` holding initdb, pg_ctl and pg_isready."""
    found = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if all(os.access(path / tool, os.X_OK) for tool in TOOLS):
            version = tuple(int(p) for p in re.findall(r"\d+", path.parent.name))
            found.append((version, path))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_user(name: str) -> None:
    """The system user ``name`` exists (created when missing)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
        )  # fmt: skip


@dataclass
class PgCluster:
    """A running throwaway cluster: where it lives and how to reach it."""

    bin: Path
    user: str
    root: Path  # the temp dir: data/, sock/, server.log
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """The URL of the tests' database (``postgresql://USER@127.0.0.1:PORT/ultrathink``)."""
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the cluster's user."""
        argv = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        proc = subprocess.run(
            argv, capture_output=True, text=True, cwd=self.root, timeout=COMMAND_TIMEOUT_S,
            env={**os.environ, "LC_ALL": "C"}, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}\n"
                f"{self.log_tail()}"
            )
        return proc

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "server log:\n" + "\n".join(text.splitlines()[-lines:])

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement (autocommit) as the cluster's superuser over TCP; its rows."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname=database,
            connect_timeout=60, autocommit=True,
        ) as conn:  # fmt: skip
            cursor = conn.execute(sql.encode())
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> str:
        """Create the database ``name``; returns its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- life cycle -------------------------------------------------------------------

    def init(self) -> None:
        self.run(
            "initdb", "-D", str(self.data), "-U", self.user, "-E", "UTF8", "--locale=C",
            "--auth=reject", "--no-sync", "--no-instructions",
        )  # fmt: skip
        sock = self.root / "sock"
        sock.mkdir(mode=0o700)
        _chown(sock, self.user)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# throwaway test cluster (tests/integration/pg_fixtures.py)\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sock}'\n"
                "max_connections = 100\n"
            )
        # trust on 127.0.0.1 and nothing else: no unix-socket, IPv6 or replication lines
        (self.data / "pg_hba.conf").write_text(
            "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
            "host    all       all   127.0.0.1/32  trust\n"
        )

    def start(self) -> None:
        """Start on a free port and wait until ``pg_isready`` says it accepts connections."""
        for _attempt in range(PORT_ATTEMPTS):
            self.port = _free_port()
            with contextlib.suppress(FileNotFoundError):
                self.log.unlink()
            self.run(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-W",
                "-o", f"-p {self.port}",
            )  # fmt: skip
            if self._wait_ready():
                return
            self.stop(mode="immediate", check=False)  # the port was taken: try another
        raise RuntimeError(f"no free port in {PORT_ATTEMPTS} attempts\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        """True once the server accepts connections; False when it could not bind its port.

        (``FATAL: the database system is starting up`` in the log is pg_isready's own probe
        being turned away, not a failure: the postmaster having exited is.)
        """
        deadline = time.monotonic() + START_TIMEOUT_S
        postmaster = None
        while True:
            ready = self.run(
                "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-d", "postgres",
                "-t", "10", "-q", check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return True
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "could not create any TCP/IP sockets" in log:
                return False  # the port was taken after it was chosen
            postmaster = self._postmaster_pid() or postmaster
            if postmaster is not None and not _alive(postmaster):
                raise RuntimeError(f"the server exited while starting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not accept connections within {START_TIMEOUT_S:.0f} s "
                    f"(pg_isready exit {ready.returncode})\n{self.log_tail()}"
                )
            time.sleep(POLL_S)

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def stop(self, mode: str = "fast", *, check: bool = True) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        timeout = str(int(START_TIMEOUT_S))
        proc = self.run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", timeout,
                        check=False)  # fmt: skip
        if proc.returncode != 0 and mode != "immediate":
            proc = self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w",
                            "-t", timeout, check=False)  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {proc.stderr.strip()}\n{self.log_tail()}")


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie, left unreaped in a container, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _cluster_user() -> str:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    missing = [tool for tool in ("useradd", "runuser") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"running as root without {', '.join(missing)}: cannot run initdb as a "
                    "non-root user")  # fmt: skip
    _ensure_user(PG_USER)
    return PG_USER


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[PgCluster]:
    """Start a cluster with the database ``ultrathink``; stop and remove it on exit."""
    bin_dir = server_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, pg_isready) not found under "
            "/usr/lib/postgresql/*/bin; install them with "
            "`apt-get install -y --no-install-recommends postgresql` (.ci/run does)"
        )
    user = _cluster_user()
    base = None
    if os.geteuid() == 0 and not _traversable(Path(tempfile.gettempdir())):
        base = "/tmp"  # the cluster's user must reach its directory
    root = Path(tempfile.mkdtemp(prefix="ultrathink-pg-", dir=base))
    _chown(root, user)
    cluster = PgCluster(bin=bin_dir, user=user, root=root)
    try:
        cluster.init()
        cluster.start()
        cluster.create_database(DATABASE)
        yield cluster
    finally:
        try:
            cluster.stop(mode="fast")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _traversable(path: Path) -> bool:
    """Every directory from / to ``path`` can be entered by others (mode o+x)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PgCluster]:
    """A running throwaway PostgreSQL cluster for the whole test session."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PgCluster) -> str:
    """``postgresql://USER@127.0.0.1:PORT/ultrathink`` on the session's cluster."""
    return postgres_cluster.url


@pytest.fixture
def postgres_database(postgres_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the session's cluster for one test (dropped after it)."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    url = postgres_cluster.create_database(name)
    yield url
    postgres_cluster.drop_database(name)
