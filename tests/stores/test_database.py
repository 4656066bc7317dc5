"""The database's one way in: a function of a connection, run on the database's own threads."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from corral.storage import engine
from corral.storage.engine import THREAD_NAME, Database, DatabaseUnavailable
from tests.stores.backing import sqlite_url

BUMP = sa.text("UPDATE key_revision SET version = version + 1")


def revision(conn: sa.Connection) -> int:
    return int(conn.scalar(sa.text("SELECT version FROM key_revision")) or 0)


async def test_work_runs_on_a_database_thread_not_the_loop(database: Database) -> None:
    name = await database.read(lambda conn: threading.current_thread().name)
    assert name.startswith(THREAD_NAME)
    assert name != threading.current_thread().name


async def test_a_function_commits_when_it_returns_and_rolls_back_when_it_raises(
    database: Database,
) -> None:
    def bump_then_fail(conn: sa.Connection) -> None:
        conn.execute(BUMP)
        raise LookupError("changed my mind")

    await database.run(lambda conn: conn.execute(BUMP))
    with pytest.raises(LookupError, match="changed my mind"):
        await database.run(bump_then_fail)
    assert await database.read(revision) == 1


async def test_a_cancelled_caller_does_not_leave_its_transaction_half_done(
    database_url: str,
) -> None:
    database = Database(database_url)
    await database.start()
    loop = asyncio.get_running_loop()
    inside, go_on = asyncio.Event(), threading.Event()

    def bump_twice(conn: sa.Connection) -> None:
        conn.execute(BUMP)
        loop.call_soon_threadsafe(inside.set)
        assert go_on.wait(30)
        conn.execute(BUMP)

    caller = asyncio.create_task(database.run(bump_twice))
    await inside.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    go_on.set()
    await database.aclose()  # waits for the transaction the caller gave up on

    database = Database(database_url)
    await database.start()
    try:
        assert await database.read(revision) == 2
    finally:
        await database.aclose()


async def test_a_closed_database_refuses_work_and_closes_once(database_url: str) -> None:
    database = Database(database_url)
    with pytest.raises(RuntimeError, match="start"):
        await database.read(revision)
    await database.start()
    await database.aclose()
    await database.aclose()
    with pytest.raises(RuntimeError, match="start"):
        await database.run(revision)


def test_an_unreachable_database_is_named_on_one_line_without_its_password() -> None:
    async def start() -> None:
        await Database("postgresql://corral:pw-s3cret@127.0.0.1:1/corral").start()

    with pytest.raises(DatabaseUnavailable) as caught:
        asyncio.run(start())
    message = str(caught.value)
    assert message.startswith("cannot open the database at postgresql+psycopg://corral:***@")
    assert "pw-s3cret" not in message and "\n" not in message
    assert "Connection refused" in message


def test_the_process_exits_with_the_database_left_open(tmp_path: Path) -> None:
    """The threads are idle between calls: a corral that never closed its database still ends."""
    script = (
        "import asyncio\n"
        "from corral.storage.engine import Database\n"
        "async def main():\n"
        f"    db = Database({sqlite_url(tmp_path)!r})\n"
        "    await db.start()\n"
        "    await db.read(lambda conn: None)\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)


def test_serving_corral_loads_neither_the_orm_nor_an_async_driver() -> None:
    """SQLAlchemy's asyncio extension, the ORM and greenlet cost a serving corral ~8 MB."""
    script = (
        "import sys, corral.app\n"
        "heavy = ('sqlalchemy.ext.asyncio', 'sqlalchemy.orm', 'greenlet', 'aiosqlite', 'asyncpg')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


async def test_a_stuck_postgresql_statement_ends_at_the_statement_timeout(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement that never ends (a lock never given up, a server gone silent) would hold a
    database thread, and an exit waiting for it, for ever: PostgreSQL cancels it instead."""
    monkeypatch.setattr(engine, "POSTGRES_STATEMENT_TIMEOUT_MS", 200)
    database = Database(postgres_url)
    await database.start()
    try:
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            await asyncio.wait_for(
                database.read(lambda conn: conn.execute(sa.text("SELECT pg_sleep(30)"))), 20
            )
        # The connection is fine afterwards, and a URL's own options win over the default.
        assert await database.read(lambda conn: conn.scalar(sa.text("SELECT 1"))) == 1
    finally:
        await database.aclose()
    own = Database(f"{postgres_url}?options=-c%20statement_timeout%3D0")
    await own.start()
    try:
        setting = await own.read(lambda conn: conn.scalar(sa.text("SHOW statement_timeout")))
        assert setting == "0"
    finally:
        await own.aclose()
