"""Upgrading a database to the schema this corral needs, in place, with the shipped migrations.

A database already at :data:`HEAD_REVISION` is recognised with one query, and a new one (none of
corral's tables yet) gets the newest schema straight from :mod:`corral.storage.schema`, stamped
with the head revision as Alembic would stamp it: neither loads Alembic, which a long-running
corral would otherwise carry in memory for nothing (about 12 MB with its templating and
highlighting libraries). A test holds the two schemas together. Only an older database goes
through the migrations.

Everything here is synchronous, as Alembic is: :class:`corral.storage.engine.Database` runs it
on its own threads, each step on a connection it hands over::

    if not await database.read(is_current):
        await database.run(upgrade)       # every step up to the head, in one transaction
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest file in migrations/versions; a test holds the two together.
HEAD_REVISION = "0003"
HEAD = "head"
# Any fixed number: instances starting together on one PostgreSQL take turns migrating.
_PG_LOCK = 0x636F7272616C  # "corral"


def _config(connection: sa.Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def script_head() -> str | None:
    """The head revision according to the migration scripts themselves."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(None)).get_current_head()


def is_current(connection: sa.Connection) -> bool:
    """Whether the database is at :data:`HEAD_REVISION`. On PostgreSQL a failed query spoils
    its transaction: ask on a connection of its own (``Database.read``)."""
    try:
        found = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except DBAPIError:  # no such table: a new database
        return False
    return bool(found == HEAD_REVISION)


def current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def is_new(connection: sa.Connection) -> bool:
    """Whether the database holds none of corral's tables (other tables may share it)."""
    from corral.storage.schema import metadata

    ours = {*metadata.tables, "alembic_version"}
    return not ours & set(sa.inspect(connection).get_table_names())


def create_at_head(connection: sa.Connection) -> None:
    """The newest schema in a new database, and the version table Alembic would have left."""
    from corral.storage.schema import key_revision, metadata

    metadata.create_all(connection)
    # The rows the migrations write, not only their tables.
    connection.execute(key_revision.insert().values(id=1, version=0))
    version = sa.Table(
        "alembic_version",
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(connection)
    connection.execute(version.insert().values(version_num=HEAD_REVISION))


def upgrade(connection: sa.Connection, revision: str = HEAD) -> None:
    """Bring the database to ``revision`` (the newest schema by default), within the
    transaction of ``connection``: every step lands together or none does."""
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends: the second instance then finds nothing to do.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
    if revision == HEAD and is_new(connection):
        create_at_head(connection)
        return
    from alembic import command

    command.upgrade(_config(connection), revision)
