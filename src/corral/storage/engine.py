"""The database corral keeps its keys, usage and webhooks in: an SQLite file by default,
PostgreSQL when ``database_url`` says so. Opened once per process, migrated to the current schema
on start.

Why blocking drivers on threads of their own: nothing on a request's path waits on the database
(keys are verified from memory, usage and webhook events are written in batches), so what the
storage layer needs is a few statements a second at most, off the event loop. SQLAlchemy's asyncio
extension would bring in the ORM and greenlet, and with aiosqlite cost a serving corral about
8 MB of memory for that; plain SQLAlchemy Core with the standard library's ``sqlite3`` or
psycopg 3 costs about 2 MB. So the stores write their SQL as ordinary functions of a
:class:`~sqlalchemy.engine.Connection`, and :meth:`Database.run` runs one, inside a transaction,
on the database's own small thread pool (named ``corral-db``; never the loop's default executor,
which other work shares)::

    def count_usage(conn: sa.Connection) -> int:
        return int(conn.scalar(sa.text("SELECT count(*) FROM usage")) or 0)

    database = Database.from_settings(settings)
    await database.start()                 # creates data_dir/corral.db on first start
    rows = await database.read(count_usage)
    await database.aclose()

A function runs whole or not at all: its transaction commits when it returns and rolls back when
it raises. A caller cancelled while its function runs stops waiting, but the thread finishes the
transaction; :meth:`Database.aclose` waits for such work before it closes the connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from corral.storage import migrate

if TYPE_CHECKING:
    from corral.settings import Settings

log = logging.getLogger("corral.storage")

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_FILE = "corral.db"
# The blocking drivers for the URLs people write: sqlite:/// and postgresql:// (or postgres://).
# URLs that name the asynchronous drivers corral used before keep working, on these.
_DRIVERS = {
    "sqlite": "sqlite",  # the standard library's sqlite3
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}
# SQLite allows one writer at a time; the CLI and a running corral write the same file, so a
# writer waits this long for the other before giving up.
SQLITE_BUSY_MS = 5000
# One thread is all SQLite can use: it writes one transaction at a time anyway. PostgreSQL
# takes a few at once (a usage batch need not wait for a key refresh); one connection each.
SQLITE_THREADS = 1
POSTGRES_THREADS = 4
# Seconds to wait for PostgreSQL to accept a connection (unless the URL says): a server that
# does not answer fails a start, a refresh or a batch in this time, and never holds up an exit
# for longer.
POSTGRES_CONNECT_TIMEOUT = 10
# Milliseconds a PostgreSQL statement may run (unless the URL sets ``options``): a statement
# stuck on a lock or a server that stopped answering ends with an error in this time, rather
# than holding one of the database's threads, and an exit that waits for it, for ever. Far
# above what corral's statements take, usage reports over long spans included.
POSTGRES_STATEMENT_TIMEOUT_MS = 60_000
THREAD_NAME = "corral-db"


def database_url(settings: Settings) -> URL:
    """The engine URL for ``settings``: ``database_url``, or the SQLite file in ``data_dir``."""
    if settings.database_url is None:
        path = (Path(settings.data_dir) / DEFAULT_FILE).resolve()
        return URL.create("sqlite", database=str(path))
    return engine_url(settings.database_url)


def engine_url(text: str) -> URL:
    """The URL as SQLAlchemy needs it, on the driver corral ships for that database.

    >>> engine_url("postgres://corral@db/corral").drivername
    'postgresql+psycopg'
    """
    url = make_url("postgresql" + text[len("postgres") :] if text.startswith("postgres:") else text)
    driver = _DRIVERS.get(url.drivername)
    return url.set(drivername=driver) if driver else url


def error_reason(exc: BaseException) -> str:
    """What the driver said about ``exc``, on one line (libpq's messages take several).

    >>> error_reason(OSError("connection refused\\n\\tIs the server running?"))
    'connection refused Is the server running?'
    """
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (a running corral) never block the writer (the CLI), and the other way round.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# These two run on a database thread.


def _in_transaction(engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    with engine.begin() as conn:
        return work(conn)


def _on_connection(engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    with engine.connect() as conn:
        return work(conn)


class DatabaseUnavailable(Exception):
    """The database could not be opened or upgraded; the message names it (without password)."""


class Database:
    """One SQLAlchemy engine, the threads that use it, and the schema it needs.

    >>> Database("sqlite:///tmp/keys.db").display_url
    'sqlite:///tmp/keys.db'
    """

    def __init__(self, url: str | URL, *, migrate: bool = True) -> None:
        self.url = engine_url(url) if isinstance(url, str) else url
        self.migrate = migrate
        self._engine: sa.Engine | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Work handed to the threads and not finished: aclose waits for it.
        self._busy: set[concurrent.futures.Future[Any]] = set()

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

    async def run(
        self,
        work: Callable[Concatenate[sa.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``work(connection, *args, **kwargs)`` in one transaction, on a database thread.

        The transaction commits when ``work`` returns and rolls back when it raises; its
        exception reaches the caller as it is.
        """

        def bound(conn: sa.Connection) -> T:
            return work(conn, *args, **kwargs)

        return await self._submit(_in_transaction, bound)

    async def read(
        self,
        work: Callable[Concatenate[sa.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``work(connection, *args, **kwargs)`` on a database thread, committing nothing: for
        queries (on SQLite a plain read takes no write lock)."""

        def bound(conn: sa.Connection) -> T:
            return work(conn, *args, **kwargs)

        return await self._submit(_on_connection, bound)

    async def _submit(
        self,
        call: Callable[[sa.Engine, Callable[[sa.Connection], T]], T],
        work: Callable[[sa.Connection], T],
    ) -> T:
        engine, executor = self._engine, self._executor
        if engine is None or executor is None:
            raise RuntimeError("Database.start() has not been called")
        # What loop.run_in_executor does, keeping the thread's future so that aclose can wait
        # for work whose caller was cancelled.
        future = executor.submit(call, engine, work)
        self._busy.add(future)
        future.add_done_callback(self._busy.discard)
        return await asyncio.wrap_future(future)

    async def start(self) -> None:
        """Open the engine (creating the SQLite file and its folder) and upgrade the schema."""
        if self._engine is not None:
            return
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite}
        threads = SQLITE_THREADS
        if self.is_sqlite:
            database = self.url.database or ""
            if database in ("", ":memory:"):
                # One connection, or every connection would see its own empty database.
                options["poolclass"] = StaticPool
                options["connect_args"] = {"check_same_thread": False}
            else:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            threads = POSTGRES_THREADS
            options["pool_size"] = POSTGRES_THREADS
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in self.url.query:
                connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT
            if "options" not in self.url.query:
                connect_args["options"] = f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MS}"
            options["connect_args"] = connect_args
        engine = sa.create_engine(self.url, **options)
        if self.is_sqlite:
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        self._engine = engine
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, THREAD_NAME)
        if self.migrate:
            try:
                if not await self.read(migrate.is_current):
                    await self.run(migrate.upgrade)
            except (SQLAlchemyError, OSError) as exc:
                await self.aclose()
                raise DatabaseUnavailable(
                    f"cannot open the database at {self.display_url}: {error_reason(exc)}"
                ) from exc
        log.debug("database ready", extra={"fields": {"database": self.display_url}})

    async def aclose(self) -> None:
        """Let the work already handed over finish, close the connections, end the threads."""
        engine, executor = self._engine, self._executor
        if engine is None or executor is None:
            return
        self._engine = self._executor = None  # new work is refused from here on
        try:
            if self._busy:
                await asyncio.wait([asyncio.wrap_future(f) for f in list(self._busy)])
        finally:
            # Queued behind that work, on the same threads; the threads end once it is done.
            disposed = executor.submit(engine.dispose)
            executor.shutdown(wait=False)
        await asyncio.wrap_future(disposed)
