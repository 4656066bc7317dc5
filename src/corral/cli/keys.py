"""``corral keys``: create, list, show, update, revoke and delete API keys.

The commands work on the database directly, with the same settings as ``corral serve``
(``--config``, ``.env``, ``CORRAL_DATABASE_URL``...), so they need no running corral. A running
corral takes a change on within ``auth.refresh_interval`` seconds, or at once through Redis.

    $ corral keys create --name ci --models llama3.2,qwen* --rpm 60 --expires 90d
    corral_Vh3...                      # shown once; stdout holds only the key
    $ corral keys list [--json]
    $ corral keys show ci              # by id, name, visible prefix or the key itself
    $ corral keys update ci --tpm 20000 --expires never --disable
    $ corral keys revoke ci
    $ corral keys delete ci

Seed 004's commands work as well: ``generatekey``, ``generatekeys N``, ``listkeys`` and
``removekey KEY``, as ``corral <command>``, ``corral keys <command>`` or in ``corral shell``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from corral.cli.key_output import echo_created, echo_record, echo_records
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.admin import AdminService
    from corral.settings import Settings
    from corral.storage.keys import KeyChanges, KeyRecord

T = TypeVar("T")
Op = Callable[["AdminService"], Awaitable[T]]
Command = TypeVar("Command", bound=Callable[..., Any])


class ServiceRunner:
    """Runs one admin operation: on a fresh connection (a command) or a held one (the shell)."""

    def run(self, op: Op[T]) -> T:
        raise NotImplementedError


class OneShot(ServiceRunner):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, op: Op[T]) -> T:
        from corral.admin import open_admin

        async def once() -> T:
            async with open_admin(self.settings) as admin:
                return await op(admin)

        return run_admin(lambda: asyncio.run(once()), self.settings)


def run_admin(call: Callable[[], T], settings: Settings) -> T:
    """``call()``, with admin and database errors turned into a one-line message (exit 1)."""
    from sqlalchemy.exc import SQLAlchemyError

    from corral.storage.engine import Database, DatabaseUnavailable, error_reason

    try:
        return call()
    except CorralError as err:
        raise click.ClickException(err.message) from None
    except DatabaseUnavailable as err:
        raise click.ClickException(str(err)) from None
    except (SQLAlchemyError, OSError) as err:
        where = Database.from_settings(settings).display_url
        raise click.ClickException(
            f"cannot use the database at {where}: {error_reason(err)}"
        ) from None


def store_options(command: Command) -> Command:
    """Where the keys are: the flags that override the settings ``corral serve`` reads."""
    file_type = click.Path(exists=True, dir_okay=False, path_type=Path)
    options = (
        click.option("--config", "config_file", type=file_type, envvar="CORRAL_CONFIG",
                     help="A TOML settings file (or a seed-001 config.json)."),
        click.option("--env-file", type=file_type, help="Read this dotenv file instead of ./.env."),
        click.option("--database-url", help="sqlite:///path or postgresql://... (default: "
                     "corral.db in the data directory)."),
        click.option("--data-dir", help="Where corral keeps its files."),
        click.option("--redis-url", help="Redis to tell running corrals about the change."),
    )  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def runner(ctx: click.Context, store: dict[str, Any]) -> ServiceRunner:
    if isinstance(ctx.obj, ServiceRunner):
        return ctx.obj  # inside `corral shell`: its own settings and connection
    from corral.cli.main import load_or_exit

    config_file, env_file = store.pop("config_file", None), store.pop("env_file", None)
    return OneShot(load_or_exit(config_file, env_file, store))


json_flag = click.option("--json", "json_output", is_flag=True, help="Print JSON.")
limit_help = "A whole number; 0 or 'none': no limit."


# ---- commands ---------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Create, list, show, update, revoke and delete API keys."""


@keys.command()
@click.option("--name", required=True, help="A name to find the key by (letters, digits, ._@:-).")
@click.option("--description", default="", help="What the key is for.")
@click.option("--models", help="Models it may use, comma-separated; * wildcards (default: all).")
@click.option("--rpm", help="Requests per minute. " + limit_help)
@click.option("--tpm", help="Tokens per minute. " + limit_help)
@click.option("--max-concurrency", help="Requests in flight at once. " + limit_help)
@click.option("--expires", help="90m, 12h, 30d, 4w, a date (2027-01-31), or never (default).")
@json_flag
@store_options
@click.pass_context
def create(ctx: click.Context, /, name: str, description: str, models: str | None, rpm: str | None,
           tpm: str | None, max_concurrency: str | None, expires: str | None, json_output: bool,
           **store: Any) -> None:  # fmt: skip
    """Make a new key and print it (the only time it is ever shown)."""
    from corral.admin import parse_expiry, parse_limit, parse_models
    from corral.storage.keys import KeySpec

    async def op(admin: AdminService) -> tuple[KeyRecord, str]:
        spec = KeySpec(
            name=name,
            description=description,
            models=parse_models(models),
            rpm=parse_limit(rpm, "rpm"),
            tpm=parse_limit(tpm, "tpm"),
            max_concurrency=parse_limit(max_concurrency, "max-concurrency"),
            expires_at=parse_expiry(expires, admin.now()),
        )
        return await admin.create_key(spec)

    echo_created([runner(ctx, store).run(op)], json_output)


@keys.command("list")
@json_flag
@store_options
@click.pass_context
def list_keys(ctx: click.Context, /, json_output: bool, **store: Any) -> None:
    """Every key, with its status, models, limits and last use."""
    echo_records(runner(ctx, store).run(lambda admin: admin.list_keys()), json_output)


@keys.command()
@click.argument("key")
@click.option(
    "--url",
    envvar="CORRAL_URL",
    help="A running corral: also show what the key has used of its limits right now.",
)
@click.option("--admin-token", envvar="CORRAL_ADMIN_TOKEN", help="Its admin token, if set.")
@json_flag
@store_options
@click.pass_context
def show(
    ctx: click.Context,
    /,
    key: str,
    url: str | None,
    admin_token: str | None,
    json_output: bool,
    **store: Any,
) -> None:
    """One key, by id, name, visible prefix or the key itself."""
    record = runner(ctx, store).run(lambda admin: admin.show_key(key))
    if url is None:
        echo_record(record, json_output)
        return
    # Limits are counted in the running corral (or Redis), not in the database: ask it.
    from corral.cli.admin_client import AdminClient

    live = AdminClient(url, admin_token).call("GET", f"/admin/keys/{record.id}")
    usage = live.get("limit_usage", []) if isinstance(live, dict) else []
    if json_output:
        click.echo(json.dumps(live, indent=2, default=str))
        return
    echo_record(record, False)
    for row in usage:
        click.echo(f"{row['limit']}: {row['used']} of {row['max']} used")
    if not usage:
        click.echo("no per-key limits apply")


@keys.command()
@click.argument("key")
@click.option("--name", help="A new name.")
@click.option("--description", help="A new description.")
@click.option("--models", help="Models it may use, comma-separated; '*' or '': all models.")
@click.option("--rpm", help="Requests per minute. " + limit_help)
@click.option("--tpm", help="Tokens per minute. " + limit_help)
@click.option("--max-concurrency", help="Requests in flight at once. " + limit_help)
@click.option("--expires", help="90m, 12h, 30d, 4w, a date, or never.")
@click.option("--enable/--disable", "active", default=None, help="Turn the key on or off.")
@json_flag
@store_options
@click.pass_context
def update(ctx: click.Context, /, key: str, name: str | None, description: str | None,
           models: str | None, rpm: str | None, tpm: str | None, max_concurrency: str | None,
           expires: str | None, active: bool | None, json_output: bool,
           **store: Any) -> None:  # fmt: skip
    """Change a key's name, description, models, limits, expiry, or switch it on or off."""
    from corral.admin import parse_expiry, parse_limit, parse_models

    async def op(admin: AdminService) -> KeyRecord:
        given: dict[str, Any] = {"name": name, "description": description, "active": active}
        changes = {field: value for field, value in given.items() if value is not None}
        if models is not None:
            changes["models"] = None if models.strip() == "*" else parse_models(models)
        for field, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrency", max_concurrency)):
            if value is not None:
                changes[field] = parse_limit(value, field.replace("_", "-"))
        if expires is not None:
            changes["expires_at"] = parse_expiry(expires, admin.now())
        return await admin.update_key(key, key_changes(changes))

    echo_record(runner(ctx, store).run(op), json_output, None if json_output else "updated")


def key_changes(fields: dict[str, Any]) -> KeyChanges:
    from corral.storage.keys import KeyChanges

    return KeyChanges(**fields)


@keys.command()
@click.argument("key")
@json_flag
@store_options
@click.pass_context
def revoke(ctx: click.Context, /, key: str, json_output: bool, **store: Any) -> None:
    """Refuse a key from now on, for good; it stays listed."""
    echo_record(runner(ctx, store).run(lambda admin: admin.revoke_key(key)), json_output, "revoked")


@keys.command()
@click.argument("key")
@json_flag
@store_options
@click.pass_context
def delete(ctx: click.Context, /, key: str, json_output: bool, **store: Any) -> None:
    """Remove a key altogether (revoke keeps a record of it)."""
    echo_record(runner(ctx, store).run(lambda admin: admin.delete_key(key)), json_output, "deleted")


# ---- seed 004's command names -----------------------------------------------------------------


@click.command()
@click.option("--name", help="A name for the key (default: key-<prefix>).")
@json_flag
@store_options
@click.pass_context
def generatekey(ctx: click.Context, /, name: str | None, json_output: bool, **store: Any) -> None:
    """Make one key with every model and no limits (seed 004)."""
    if name is not None:
        blank = dict.fromkeys(["models", "rpm", "tpm", "max_concurrency", "expires"])
        ctx.invoke(create, name=name, description="", json_output=json_output, **blank, **store)
        return
    echo_created(runner(ctx, store).run(lambda admin: admin.generate_keys(1)), json_output)


@click.command()
@click.argument("count", type=click.IntRange(1, 100))
@json_flag
@store_options
@click.pass_context
def generatekeys(ctx: click.Context, /, count: int, json_output: bool, **store: Any) -> None:
    """Make COUNT keys at once (seed 004)."""
    echo_created(runner(ctx, store).run(lambda admin: admin.generate_keys(count)), json_output)


@click.command()
@json_flag
@store_options
@click.pass_context
def listkeys(ctx: click.Context, /, json_output: bool, **store: Any) -> None:
    """List every key (seed 004)."""
    ctx.invoke(list_keys, json_output=json_output, **store)


@click.command()
@click.argument("key")
@json_flag
@store_options
@click.pass_context
def removekey(ctx: click.Context, /, key: str, json_output: bool, **store: Any) -> None:
    """Delete a key given by the key itself, its id or its name (seed 004)."""
    ctx.invoke(delete, key=key, json_output=json_output, **store)


SEED_COMMANDS = (generatekey, generatekeys, listkeys, removekey)
for _command in SEED_COMMANDS:
    keys.add_command(_command)
