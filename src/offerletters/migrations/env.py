"""Alembic's environment for the ledger: how a migration reaches the database.

`Ledger.migrate()` hands over its open connection in `config.attributes`, and
the migration runs inside that connection's transaction. The alembic command
line has none, so this opens one the same way the ledger does.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from offerletters.errors import ConfigError
from offerletters.ledger.engine import WRITE, create_engine, database_url
from offerletters.ledger.schema import metadata

URL_ENV = "OFFERLETTERS_DATABASE_URL"

config = context.config


def run_migrations(connection: Connection) -> None:
    """Run the command's migrations on an open connection."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it; batch mode writes revisions
        # that do, and PostgreSQL runs them as plain ALTERs.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def command_line_url() -> str:
    """The database the alembic command line was pointed at."""
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get(URL_ENV)
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise ConfigError(f"name the database with -x url=... or {URL_ENV}")

    return url


async def migrate_from_command_line(url: str) -> None:
    """Migrate in one writing transaction, on an engine set up like the ledger's."""
    engine = create_engine(database_url(url))
    try:
        async with engine.execution_options(**{WRITE: True}).begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return

    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)

    url = command_line_url()
    if context.is_offline_mode():
        # --sql: print the SQL for a DBA to run instead of running it.
        context.configure(
            url=database_url(url),
            target_metadata=metadata,
            literal_binds=True,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    asyncio.run(migrate_from_command_line(url))


main()
