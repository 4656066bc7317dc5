"""Schema migrations: a new database gets the whole schema, an old one is upgraded in place."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from corral.auth.authenticator import Authenticator
from corral.auth.keyformat import new_key
from corral.auth.keyring import KeyRing
from corral.settings import Settings
from corral.storage import migrate
from corral.storage.engine import Database, engine_url
from corral.storage.keys import SqlKeyStore
from tests.stores.backing import create_postgres_database, drop_postgres_database, sqlite_url


def test_the_head_constant_names_the_newest_migration() -> None:
    assert migrate.script_head() == migrate.HEAD_REVISION


async def test_first_start_creates_the_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "data")
    database = Database.from_settings(settings)
    await database.start()
    try:
        assert (tmp_path / "fresh" / "data" / "corral.db").is_file()
        mode = await database.read(lambda conn: conn.scalar(sa.text("PRAGMA journal_mode")))
        assert mode == "wal"
        assert await database.read(migrate.current_revision) == migrate.HEAD_REVISION
    finally:
        await database.aclose()


async def test_starting_again_on_a_current_database_changes_nothing(database_url: str) -> None:
    for _ in range(2):
        database = Database(database_url)
        await database.start()
        assert await database.read(migrate.is_current)
        await database.aclose()


def insert_version_1_key(conn: sa.Connection, prefix: str, digest: bytes) -> None:
    columns = {row[1] for row in conn.execute(sa.text("PRAGMA table_info(api_keys)"))}
    assert "rpm" not in columns and "request_count" not in columns
    conn.execute(
        sa.text(
            "INSERT INTO api_keys (name, description, prefix, digest, created_at,"
            " updated_at, active) VALUES ('old', 'from 0001', :prefix, :digest,"
            " '2025-01-02 03:04:05.000000', '2025-01-02 03:04:05.000000', 1)"
        ),
        {"prefix": prefix, "digest": digest.hex()},
    )
    conn.execute(sa.text("UPDATE key_revision SET version = version + 1"))


async def write_version_1_database(url: str, plaintext: str, prefix: str, digest: bytes) -> None:
    """What corral at schema 0001 left behind: the table as it was, and one key in it."""
    database = Database(url, migrate=False)
    await database.start()
    try:
        await database.run(migrate.upgrade, "0001")
        assert await database.read(migrate.current_revision) == "0001"
        await database.run(insert_version_1_key, prefix, digest)
    finally:
        await database.aclose()


async def test_a_version_1_sqlite_database_upgrades_without_losing_keys(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    issued = new_key()
    await write_version_1_database(url, issued.plaintext, issued.prefix, issued.digest)

    database = Database(url)
    await database.start()  # what a newer corral does on start: upgrade in place
    try:
        assert await database.read(migrate.current_revision) == migrate.HEAD_REVISION
        store = SqlKeyStore(database)
        (record,) = await store.list()
        assert (record.name, record.description, record.prefix) == ("old", "from 0001", issued.prefix)
        assert record.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert (record.rpm, record.models, record.request_count, record.token_count) == (
            None,
            None,
            0,
            0,
        )
        ring = KeyRing(store, interval=60)
        await ring.load()
        assert Authenticator(ring).verify(issued.plaintext).name == "old"
        tables = set(await database.read(lambda conn: sa.inspect(conn).get_table_names()))
        assert {"usage", "webhooks", "webhook_outbox", "key_revision"} <= tables
    finally:
        await database.aclose()


async def test_postgresql_gets_the_same_schema(postgres_url: str) -> None:
    database = Database(postgres_url)
    await database.start()
    try:
        columns = await database.read(
            lambda conn: {c["name"] for c in sa.inspect(conn).get_columns("api_keys")}
        )
        assert {"digest", "prefix", "models", "rpm", "tpm", "request_count"} <= columns
        assert "plaintext" not in columns and "key" not in columns
    finally:
        await database.aclose()


@pytest.mark.parametrize(
    ("text", "driver"),
    [
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
        # What corral's asynchronous drivers were called: existing settings keep working.
        ("postgresql+asyncpg://u@h/db", "postgresql+psycopg"),
        ("sqlite+aiosqlite:///x.db", "sqlite"),
    ],
)
def test_database_urls_get_a_driver_corral_ships(text: str, driver: str) -> None:
    url = engine_url(text)
    assert url.drivername == driver
    assert url.render_as_string().split("://", 1)[1] == text.split("://", 1)[1]


def test_the_displayed_url_hides_the_password() -> None:
    assert "s3cret" not in Database("postgresql://corral:s3cret@db/corral").display_url


def schema_of(sync: sa.Connection) -> dict[str, object]:
    """Tables with their columns (type, nullability), indexes and foreign keys, as the
    database itself describes them."""
    inspector = sa.inspect(sync)
    found: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        columns = [
            (c["name"], str(c["type"]).split("(")[0], c["nullable"])
            for c in inspector.get_columns(table)
        ]
        indexes = sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(table)
        )
        keys = sorted(
            (tuple(k["constrained_columns"]), k["referred_table"], k["options"].get("ondelete"))
            for k in inspector.get_foreign_keys(table)
        )
        primary = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
        # and the rows a migration writes (the key revision counter)
        rows = sorted(tuple(row) for row in sync.execute(sa.text(f'SELECT * FROM "{table}"')))
        found[table] = (sorted(columns), indexes, keys, primary, rows)
    return found


async def test_a_new_database_gets_exactly_the_schema_the_migrations_build(
    database_url: str, tmp_path: Path
) -> None:
    """A new database is created from corral.storage.schema, not by the migrations: the two
    must agree, or an older database upgraded in place would differ from a new one."""
    if database_url.startswith("sqlite"):
        stepwise_url = sqlite_url(tmp_path / "stepwise")
        (tmp_path / "stepwise").mkdir()
    else:
        stepwise_url = await create_postgres_database()
    created, stepwise = Database(database_url, migrate=False), Database(stepwise_url, migrate=False)
    await created.start()
    await stepwise.start()
    try:
        await created.run(migrate.upgrade)  # new: straight from the schema module
        for revision in ("0001", "0002", migrate.HEAD_REVISION):  # one migration at a time
            await stepwise.run(migrate.upgrade, revision)
        schemas = []
        for database in (created, stepwise):
            assert await database.read(migrate.current_revision) == migrate.HEAD_REVISION
            schemas.append(await database.read(schema_of))
        assert schemas[0] == schemas[1]
        assert {"api_keys", "usage", "webhooks", "webhook_outbox"} <= set(schemas[0])
    finally:
        await created.aclose()
        await stepwise.aclose()
        if not stepwise_url.startswith("sqlite"):
            await drop_postgres_database(stepwise_url)


def test_a_new_database_is_created_without_loading_alembic(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from corral.storage.engine import Database\n"
        "async def main():\n"
        f"    db = Database({sqlite_url(tmp_path)!r})\n"
        "    await db.start()\n"
        "    await db.aclose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "corral.db").is_file()
