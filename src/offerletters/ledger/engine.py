"""The ledger's database connection: URLs, engines tuned per backend, and errors.

SQLAlchemy and driver errors are translated here, once, into LedgerError and
LedgerUnavailable, whose messages name the database (never its password) and
what to do about it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import URL, Connection, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from offerletters.errors import ConfigError, LedgerError, LedgerUnavailable

__all__ = [
    "WRITE",
    "LedgerError",
    "LedgerUnavailable",
    "create_engine",
    "database_url",
    "describe",
    "translated",
]

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"

# The async driver for each way a URL may name a backend; "postgres://" is the
# scheme many hosting providers hand out.
DRIVERS = {
    "sqlite": SQLITE_DRIVER,
    SQLITE_DRIVER: SQLITE_DRIVER,
    "postgres": POSTGRES_DRIVER,
    "postgresql": POSTGRES_DRIVER,
    POSTGRES_DRIVER: POSTGRES_DRIVER,
}

# How long a SQLite writer waits for another process to finish writing before
# it gives up with "database is locked". The longest write, a 100,000-letter
# batch, takes a few seconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# How long to wait for a PostgreSQL connection before calling it unreachable.
CONNECT_TIMEOUT_S = 10.0

# Execution option that marks a transaction as one that writes; see
# _begin_sqlite for why SQLite needs to know in advance.
WRITE = "offerletters_ledger_write"

# PostgreSQL error classes that mean the server cannot be used as configured:
# connection faults, refused credentials, no such database, too many
# connections, shutting down.
UNREACHABLE_SQLSTATE_CLASSES = ("08", "28", "3D", "53", "57")

# PostgreSQL error codes meaning the ledger's tables or columns are missing,
# that is, the migrations have not run.
UNDEFINED_TABLE = "42P01"
UNDEFINED_COLUMN = "42703"
SQLITE_SCHEMA_MISSING = ("no such table", "no such column", "has no column named")


def database_url(url: str) -> URL:
    """The URL with its async driver; ConfigError for a backend we do not run on."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        # Not echoed: a URL that fails to parse may still carry a password.
        raise ConfigError(
            "the ledger database URL (OFFERLETTERS_DATABASE_URL) is not a URL;"
            " write it like sqlite+aiosqlite:///offerletters.db or"
            " postgresql+asyncpg://user:password@host:5432/offerletters"
        ) from None

    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"the ledger database URL {describe(parsed)} uses"
            f" {parsed.drivername!r}; the ledger runs on SQLite"
            " (sqlite+aiosqlite:///offerletters.db) or PostgreSQL"
            " (postgresql+asyncpg://user:password@host:5432/offerletters);"
            " fix OFFERLETTERS_DATABASE_URL"
        )

    return parsed.set(drivername=driver)


def describe(url: URL) -> str:
    """The URL as it may appear in logs and errors: the password masked."""
    return url.render_as_string(hide_password=True)


def create_engine(url: URL) -> AsyncEngine:
    """An engine for the URL, set up so several processes can share the database."""
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _prepare_sqlite)
        event.listen(engine.sync_engine, "begin", _begin_sqlite)
        return engine

    return create_async_engine(
        url,
        # A PostgreSQL restart leaves dead connections in the pool; test each
        # one before use instead of failing the first query after it.
        pool_pre_ping=True,
        connect_args={"timeout": CONNECT_TIMEOUT_S},
    )


def _prepare_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Make a new SQLite connection safe to share the file with other processes."""
    # Transactions are begun by _begin_sqlite, not by the sqlite3 module, which
    # would otherwise begin them late and leave SELECTs outside them.
    dbapi_connection.isolation_level = None

    cursor = dbapi_connection.cursor()
    try:
        # Set first: switching to WAL itself may have to wait for a lock.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # Readers and the one writer no longer block each other, so the API
        # can report progress while workers record outcomes. WAL needs shared
        # memory, so all processes must be on one host (no network drives).
        cursor.execute("PRAGMA journal_mode = WAL")
        # Off by default in SQLite; on, it checks what PostgreSQL checks.
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    """Begin a writing transaction with the write lock already taken.

    A deferred transaction that reads before it writes must upgrade its lock
    later, and in WAL mode that upgrade fails at once with "database is
    locked" if another process wrote in between: the busy timeout does not
    apply. Taking the lock at BEGIN makes a writer wait its turn instead.
    Reading transactions stay deferred so they never wait for a writer.
    """
    writes = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


@contextlib.contextmanager
def translated(url: URL) -> Iterator[None]:
    """Turn database errors raised inside the block into ledger errors."""
    try:
        yield
    except sa_exc.DBAPIError as exc:
        raise _translate(url, exc) from exc
    except sa_exc.TimeoutError as exc:
        raise LedgerUnavailable(
            f"the ledger database {describe(url)} is busy: every pooled"
            " connection stayed in use past the pool timeout; try again"
        ) from exc
    except (OSError, TimeoutError) as exc:
        # asyncpg raises these unwrapped when it cannot connect at all.
        raise LedgerUnavailable(_unreachable(url, _reason(exc))) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise LedgerError(
            f"the ledger database {describe(url)} failed: {_reason(exc)}"
        ) from exc


def _translate(url: URL, exc: sa_exc.DBAPIError) -> LedgerError:
    # The driver's own message: str(exc) would add the statement and its
    # parameters, which have no place in an error shown to users.
    reason = _reason(exc.orig)
    if _schema_missing(exc, reason):
        return LedgerUnavailable(
            f"the ledger database {describe(url)} lacks the ledger's tables or"
            f" columns ({reason}); apply the migrations (Ledger.migrate) first"
        )

    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if (
        isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        or exc.connection_invalidated
        or sqlstate.startswith(UNREACHABLE_SQLSTATE_CLASSES)
    ):
        return LedgerUnavailable(_unreachable(url, reason))

    return LedgerError(
        f"the ledger database {describe(url)} refused the operation: {reason}"
    )


def _schema_missing(exc: sa_exc.DBAPIError, reason: str) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in (UNDEFINED_TABLE, UNDEFINED_COLUMN) or reason.startswith(
        SQLITE_SCHEMA_MISSING
    )


def _unreachable(url: URL, reason: str) -> str:
    where = describe(url)
    if url.get_backend_name() != "sqlite":
        fix = (
            "check that PostgreSQL runs there and that the host, port, user,"
            " password and database name in OFFERLETTERS_DATABASE_URL are right"
        )
    elif "locked" in reason:
        fix = (
            f"another process kept it locked for over {SQLITE_BUSY_TIMEOUT_MS // 1000}"
            " s; look for a stuck process, or move the ledger to PostgreSQL"
        )
    else:
        fix = (
            "check that its folder exists and that this process may write there"
            " (OFFERLETTERS_DATABASE_URL)"
        )

    return f"the ledger database {where} is unavailable ({reason}); {fix}"


def _reason(exc: BaseException | None) -> str:
    """The first line of an error's message, or its type when it has none."""
    if exc is None:
        return "no reason given"

    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
