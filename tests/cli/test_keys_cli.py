"""`corral keys` and seed 004's command names, on a real SQLite database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.auth.keyformat import key_digest
from corral.cli.main import main
from corral.storage.engine import Database
from corral.storage.keys import SqlKeyStore
from tests.clitools import clear_corral_environment, corral_on, read_database

KEY = re.compile(r"corral_[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clear_corral_environment(monkeypatch, tmp_path)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keys.db'}"


corral = corral_on


def stored_digests(db: str) -> list[bytes]:
    async def read(database: Database) -> list[bytes]:
        return [r.digest for r in await SqlKeyStore(database).list()]

    return read_database(db, read)


def test_create_prints_the_key_once_and_stores_its_digest(db: str) -> None:
    result = corral(db, "keys", "create", "--name", "ci", "--models", "llama3.2,qwen*",
                    "--rpm", "60", "--tpm", "10000", "--expires", "30d")  # fmt: skip
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert KEY.fullmatch(key)  # stdout holds the key alone: KEY=$(corral keys create ...)
    assert "shown this once" in result.stderr
    assert stored_digests(db) == [key_digest(key)]
    listing = corral(db, "keys", "list")
    assert key not in listing.output
    row = listing.output.splitlines()[1].split()
    assert row[:7] == ["1", "ci", key[:15], "active", "llama3.2,qwen*", "60", "10000"]


def test_json_output_for_scripts(db: str) -> None:
    created = json.loads(corral(db, "keys", "create", "--name", "ci", "--json").stdout)
    assert created["key"].startswith("corral_") and created["name"] == "ci"
    assert created["models"] is None and created["status"] == "active"
    (listed,) = json.loads(corral(db, "keys", "list", "--json").stdout)
    assert "key" not in listed and listed["prefix"] == created["prefix"]
    shown = json.loads(corral(db, "keys", "show", "1", "--json").stdout)
    assert shown == listed


def test_a_key_is_found_by_id_name_prefix_or_itself(db: str) -> None:
    key = corral(db, "keys", "create", "--name", "ci").stdout.strip()
    for ref in ["1", "ci", key[:15], key]:
        result = corral(db, "keys", "show", ref)
        assert result.exit_code == 0 and "name:            ci" in result.output, ref
        assert key not in result.output


def test_update_revoke_and_delete(db: str) -> None:
    corral(db, "keys", "create", "--name", "ci", "--rpm", "60")
    result = corral(db, "keys", "update", "ci", "--name", "build", "--rpm", "none", "--tpm", "5",
                    "--models", "llama3.2", "--expires", "2030-01-01", "--disable")  # fmt: skip
    assert result.output.startswith("updated key 1 'build' (corral_")
    shown = json.loads(corral(db, "keys", "show", "build", "--json").stdout)
    assert (shown["rpm"], shown["tpm"], shown["models"]) == (None, 5, ["llama3.2"])
    assert (shown["status"], shown["expires_at"]) == ("inactive", "2030-01-01T00:00:00Z")
    shown = json.loads(corral(db, "keys", "update", "1", "--enable", "--models", "*",
                              "--expires", "never", "--json").stdout)  # fmt: skip
    assert (shown["status"], shown["models"], shown["expires_at"]) == ("active", None, None)
    assert "revoked key 1 'build'" in corral(db, "keys", "revoke", "build").output
    assert json.loads(corral(db, "keys", "show", "1", "--json").stdout)["status"] == "revoked"
    assert "deleted key 1" in corral(db, "keys", "delete", "build").output
    assert corral(db, "keys", "list").output.startswith("no keys yet")


def test_seed_004_commands(db: str) -> None:
    one = corral(db, "generatekey")
    assert one.exit_code == 0 and KEY.fullmatch(one.stdout.strip())
    several = corral(db, "generatekeys", "3")
    keys = several.stdout.split()
    assert len(keys) == 3 and all(KEY.fullmatch(k) for k in keys)
    named = corral(db, "keys", "generatekey", "--name", "laptop")
    assert KEY.fullmatch(named.stdout.strip())
    listing = corral(db, "listkeys").output
    assert len(listing.splitlines()) == 1 + 5 and "laptop" in listing
    assert "deleted key" in corral(db, "removekey", keys[0]).output  # by the key itself
    assert "deleted key" in corral(db, "keys", "removekey", "laptop").output
    assert len(stored_digests(db)) == 3


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["keys", "create", "--name", "has space"], "a key name is"),
        (["keys", "create", "--name", "42"], "a key name is"),
        (["keys", "create", "--name", "x", "--rpm", "-3"], "rpm must be a whole number"),
        (["keys", "create", "--name", "x", "--expires", "someday"], "expires must be"),
        (["keys", "show", "nobody"], "no key with id or name 'nobody'"),
        (["keys", "revoke", "9"], "no key with id or name '9'"),
        (["generatekeys", "0"], "0 is not in the range"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_1_or_2(
    db: str, args: list[str], problem: str
) -> None:
    result = corral(db, *args)
    assert result.exit_code in (1, 2)
    assert problem in result.output


def test_a_whole_key_that_does_not_match_is_never_repeated(db: str) -> None:
    unknown = "corral_" + "Q" * 43
    result = corral(db, "keys", "delete", unknown)
    assert result.exit_code == 1
    assert "Q" * 43 not in result.output


def test_a_name_taken_twice_is_refused(db: str) -> None:
    corral(db, "keys", "create", "--name", "ci")
    result = corral(db, "keys", "create", "--name", "ci")
    assert (result.exit_code, result.stderr.strip()) == (1, "Error: a key named 'ci' already exists")


def test_the_same_settings_as_serve_choose_the_database(tmp_path: Path) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-config"}"\n')
    result = CliRunner().invoke(main, ["keys", "create", "--name", "ci", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-config" / "corral.db").is_file()
    env = {"CORRAL_DATA_DIR": str(tmp_path / "from-env")}
    result = CliRunner().invoke(main, ["generatekey"], env=env)
    assert result.exit_code == 0 and (tmp_path / "from-env" / "corral.db").is_file()


def test_an_unreachable_database_is_one_clear_line() -> None:
    url = "postgresql://corral:pw-s3cret@127.0.0.1:1/corral"
    result = CliRunner().invoke(main, ["keys", "list", "--database-url", url])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot open the database at postgresql+psycopg://")
    assert "pw-s3cret" not in result.output


def test_serve_refuses_to_start_without_its_key_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_DATABASE_URL"] = "postgresql://corral:pw-s3cret@127.0.0.1:1/corral"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-m", "corral", "serve", "--port", "0", "--backends", "127.0.0.1:9"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot open the database at postgresql+psycopg://corral:***@127.0.0.1:1" in done.stderr
    assert "pw-s3cret" not in done.stderr and "Traceback" not in done.stderr
