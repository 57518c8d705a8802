"""A real PostgreSQL server for the ledger tests, given or started on demand.

`provide_postgres()` yields an asyncpg URL: the one in
OFFERLETTERS_TEST_DATABASE_URL, or that of a throwaway cluster made with
initdb in a temporary folder and served on a free loopback port until the
block ends. No PostgreSQL on the machine is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

__all__ = ["provide_postgres"]

URL_ENV = "OFFERLETTERS_TEST_DATABASE_URL"
INSTALL_HINT = (
    "install PostgreSQL with `apt-get update && apt-get install -y postgresql`"
    " (scripts/install-postgres does it), or point "
    f"{URL_ENV} at a server (postgresql+asyncpg://user:password@host/db)"
)

USER = "offerletters"
DATABASE = "offerletters_test"
# PostgreSQL refuses to run as root; a root test run hands the cluster to the
# account the Debian package creates.
SERVER_ACCOUNT = "postgres"

START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 120
# A free port can be taken by another process before the server binds it.
PORT_ATTEMPTS = 3


def provide_postgres() -> contextlib.AbstractContextManager[str]:
    """The URL of a PostgreSQL database the tests may use, for the block's life."""
    url = os.environ.get(URL_ENV)
    if url:
        return contextlib.nullcontext(url)

    return _throwaway_cluster()


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[str]:
    """initdb, start on a free port, create the database; stop and delete after."""
    bin_dir = _find_binaries()
    account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="offerletters-pg-"))
    try:
        cluster = _Cluster(bin_dir, root, account)
        cluster.create()
        cluster.start()
        try:
            cluster.create_database()
            yield cluster.url
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _Cluster:
    """One data directory, its server process and the commands that manage it."""

    def __init__(self, bin_dir: Path, root: Path, account: pwd.struct_passwd | None):
        self._bin_dir = bin_dir
        self._account = account
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "server.log"
        self._password_file = root / "password"
        self.password = secrets.token_urlsafe(16)
        self.port = 0

        self.sockets.mkdir()
        self._password_file.write_text(self.password)
        if account is not None:
            for path in (root, self.sockets, self._password_file):
                os.chown(path, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return (
            f"postgresql+asyncpg://{USER}:{self.password}"
            f"@127.0.0.1:{self.port}/{DATABASE}"
        )

    def create(self) -> None:
        self._run(
            "initdb",
            f"--pgdata={self.data}",
            f"--username={USER}",
            f"--pwfile={self._password_file}",
            "--auth-local=trust",
            # Over TCP, as the ledger connects, a password is required: the
            # tests then also check that it never shows in an error.
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            # Throwaway data: skip the fsyncs that make initdb slow.
            "--no-sync",
        )

    def start(self) -> None:
        """Start on a free loopback port, trying another if that one is taken."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    f"--pgdata={self.data}",
                    f"--log={self.log}",
                    f"--options={options}",
                    "--wait",
                    f"--timeout={START_TIMEOUT_S}",
                )
                return
            except RuntimeError:
                if attempt == PORT_ATTEMPTS:
                    raise

    def create_database(self) -> None:
        self._run(
            "createdb",
            f"--host={self.sockets}",
            f"--port={self.port}",
            f"--username={USER}",
            DATABASE,
        )

    def stop(self) -> None:
        self._run(
            "pg_ctl",
            "stop",
            f"--pgdata={self.data}",
            "--mode=fast",
            "--wait",
        )

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin_dir / program), *args]
        if self._account is not None:
            command = ["runuser", "-u", self._account.pw_name, "--", *command]

        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            server_log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed with exit code {done.returncode}:\n"
                f"{done.stdout}{done.stderr}{server_log[-4000:]}"
            )


def _find_binaries() -> Path:
    """The folder holding initdb and pg_ctl: PATH first, then Debian's place."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    # Debian keeps each major version apart and puts none of these on PATH.
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    candidates += [Path(path) for path in debian]

    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate

    raise RuntimeError(
        f"no PostgreSQL server binaries (initdb, pg_ctl) found; {INSTALL_HINT}"
    )


def _version(bin_dir: str) -> tuple[int, ...]:
    """The major version in /usr/lib/postgresql/15/bin, newest sorting last."""
    parts = Path(bin_dir).parent.name.split(".")
    return tuple(int(part) for part in parts if part.isdigit())


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the server: us, unless we are root."""
    if os.geteuid() != 0:
        return None

    try:
        return pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise RuntimeError(
            f"running as root, the tests start PostgreSQL as the"
            f" {SERVER_ACCOUNT!r} account, which does not exist; {INSTALL_HINT}"
        ) from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fresh_database(url: str) -> str:
    """A new, empty database on the same server as `url`, and its URL.

    Runs on a thread of its own so that sync fixtures may call it while the
    tests' event loop is running.
    """
    name = f"offerletters_{uuid.uuid4().hex[:12]}"
    server = make_url(url)

    async def create() -> None:
        connection = await asyncpg.connect(
            host=server.host,
            port=server.port,
            user=server.username,
            password=server.password,
            database=server.database,
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, create()).result()
    return server.set(database=name).render_as_string(hide_password=False)
