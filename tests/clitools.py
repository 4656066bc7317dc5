"""Running the `corral` command in tests: a clean environment and a database of the test's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from corral import compat
from corral.cli.main import main


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
