"""Running the `corral` command in tests: a clean environment and a database of the test's own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result

from corral import compat
from corral.cli.main import main
from corral.storage.engine import Database

T = TypeVar("T")


def clear_corral_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CORRAL_* or seed variable of the developer's leaks in; ./.env is the test's own."""
    aliases = {alias.name for alias in compat.ENV_ALIASES}
    for name in list(os.environ):
        if name.startswith("CORRAL_") or name in aliases:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def corral_on(db: str, *args: str) -> Result:
    """``corral ARGS --database-url DB``, in process."""
    return CliRunner().invoke(main, [*args, "--database-url", db], catch_exceptions=False)


def read_database(db: str, read: Callable[[Database], Awaitable[T]]) -> T:
    """What ``read`` finds in the database at ``db``, from a test that is not async (as the
    ``corral`` command runs its own event loop)."""

    async def run() -> T:
        database = Database(db)
        await database.start()
        try:
            return await read(database)
        finally:
            await database.aclose()

    return asyncio.run(run())
