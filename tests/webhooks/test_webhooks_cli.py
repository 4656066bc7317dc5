"""`corral webhooks` and seed 004's addwebhook/deletewebhook/listwebhooks, on a real SQLite
database; a key made from the command line owes its webhooks a delivery."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli.main import main
from corral.storage.engine import Database
from corral.storage.outbox import OutboxItem, SqlOutbox
from tests.clitools import clear_corral_environment, corral_on, read_database

SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{43}")
KEY = re.compile(r"corral_[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clear_corral_environment(monkeypatch, tmp_path)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'corral.db'}"


corral = corral_on


def outbox(db: str) -> list[OutboxItem]:
    async def read(database: Database) -> list[OutboxItem]:
        return await SqlOutbox(database).list()

    return read_database(db, read)


def test_add_prints_the_secret_alone_and_list_never_shows_it(db: str) -> None:
    added = corral(db, "webhooks", "add", "https://example.com/hook", "--events", "key.created")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    assert SECRET.fullmatch(secret)
    assert "shown this once" in added.stderr
    listed = corral(db, "webhooks", "list")
    assert "https://example.com/hook" in listed.output and "key.created" in listed.output
    assert secret not in listed.output
    as_json = json.loads(corral(db, "listwebhooks", "--json").output)
    assert [hook["url"] for hook in as_json] == ["https://example.com/hook"]
    assert "secret" not in as_json[0]


def test_seed_commands_add_list_and_delete(db: str) -> None:
    assert SECRET.fullmatch(corral(db, "addwebhook", "http://127.0.0.1:9/x").stdout.strip())
    assert "http://127.0.0.1:9/x" in corral(db, "listwebhooks").output
    assert "deleted webhook 1" in corral(db, "deletewebhook", "1").output
    assert "no webhooks yet" in corral(db, "webhooks", "list").output
    missing = CliRunner().invoke(main, ["deletewebhook", "1", "--database-url", db])
    assert missing.exit_code == 1 and "no webhook with id 1" in missing.output


def test_bad_urls_and_events_are_refused(db: str) -> None:
    bad_url = CliRunner().invoke(main, ["webhooks", "add", "example.com", "--database-url", db])
    assert bad_url.exit_code == 1 and "http:// or https://" in bad_url.output
    bad_event = CliRunner().invoke(
        main, ["webhooks", "add", "https://e.com", "--events", "key.stolen", "--database-url", db]
    )
    assert bad_event.exit_code == 1 and "key.created" in bad_event.output


def test_keys_made_and_revoked_by_the_cli_owe_deliveries_without_the_key(db: str) -> None:
    corral(db, "webhooks", "add", "https://example.com/hook", "--events", "key.created,key.revoked")
    corral(db, "webhooks", "add", "https://example.com/other", "--events", "backend.down")
    made = corral(db, "keys", "create", "--name", "ci")
    plaintext = made.stdout.strip()
    assert KEY.fullmatch(plaintext)
    corral(db, "keys", "revoke", "ci")
    items = sorted(outbox(db), key=lambda item: item.id)
    assert [(item.webhook_id, item.event) for item in items] == [
        (1, "key.created"),
        (1, "key.revoked"),
    ]
    assert items[0].payload["data"] == {"key": {"id": 1, "name": "ci"}}
    assert plaintext not in repr([item.payload for item in items])
    shown = corral(db, "webhooks", "deliveries", "1").output
    assert "key.created" in shown and "not tried yet" in shown
