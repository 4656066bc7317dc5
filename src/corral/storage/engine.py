"""The database corral keeps its keys in: an SQLite file by default, PostgreSQL when
``database_url`` says so. Opened once per process, migrated to the current schema on start.

Example::

    database = Database.from_settings(settings)
    await database.start()                 # creates data_dir/corral.db on first start
    async with database.engine.begin() as conn:
        ...
    await database.aclose()
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from corral.storage.migrate import upgrade

if TYPE_CHECKING:
    from corral.settings import Settings

log = logging.getLogger("corral.storage")

DEFAULT_FILE = "corral.db"
# Async drivers for the URLs people write: sqlite:/// and postgresql:// (or postgres://).
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
# SQLite allows one writer at a time; the CLI and a running corral write the same file, so a
# writer waits this long for the other before giving up.
SQLITE_BUSY_MS = 5000


def database_url(settings: Settings) -> URL:
    """The async URL for ``settings``: ``database_url``, or the SQLite file in ``data_dir``."""
    if settings.database_url is None:
        path = (Path(settings.data_dir) / DEFAULT_FILE).resolve()
        return URL.create("sqlite+aiosqlite", database=str(path))
    return async_url(settings.database_url)


def async_url(text: str) -> URL:
    url = make_url("postgresql" + text[len("postgres") :] if text.startswith("postgres:") else text)
    driver = _ASYNC_DRIVERS.get(url.drivername)
    return url.set(drivername=driver) if driver else url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (a running corral) never block the writer (the CLI), and the other way round.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class DatabaseUnavailable(Exception):
    """The database could not be opened or upgraded; the message names it (without password)."""


class Database:
    """One async engine and the schema it needs.

    >>> Database("sqlite:///tmp/keys.db").display_url
    'sqlite+aiosqlite:///tmp/keys.db'
    """

    def __init__(self, url: str | URL, *, migrate: bool = True) -> None:
        self.url = async_url(url) if isinstance(url, str) else url
        self.migrate = migrate
        self._engine: AsyncEngine | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(database_url(settings))

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs and messages."""
        return self.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database.start() has not been called")
        return self._engine

    async def start(self) -> None:
        """Open the engine (creating the SQLite file and its folder) and upgrade the schema."""
        if self._engine is not None:
            return
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            database = self.url.database or ""
            if database in ("", ":memory:"):
                # One connection, or every connection would see its own empty database.
                options["poolclass"] = StaticPool
            else:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if self.migrate:
            try:
                await upgrade(engine)
            except (SQLAlchemyError, OSError) as exc:
                await engine.dispose()
                reason = getattr(exc, "orig", None) or exc
                raise DatabaseUnavailable(
                    f"cannot open the database at {self.display_url}: {reason}"
                ) from exc
        self._engine = engine
        log.debug("database ready", extra={"fields": {"database": self.display_url}})

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
