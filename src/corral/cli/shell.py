"""``corral shell``: the key commands at an interactive prompt, with history and completion.

Seed 004 ran such a prompt next to its server; corral's works on the database directly, like
``corral keys``, so it can run anywhere the settings point at the same database::

    $ corral shell
    corral> generatekey
    corral> keys create --name ci --models llama3.2 --rpm 60
    corral> listkeys
    corral> removekey ci
    corral> help
    corral> exit

Tab completes commands, options and key names; up and down walk the history, which is kept in
``data_dir/shell_history``. Without a terminal (``corral shell < commands.txt``) it reads one
command a line and prints no prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from corral.cli.keys import (
    SEED_COMMANDS,
    Op,
    ServiceRunner,
    T,
    keys,
    run_admin,
    store_options,
)
from corral.cli.usage import usage
from corral.cli.webhooks import SEED_WEBHOOK_COMMANDS, webhooks

if TYPE_CHECKING:
    from prompt_toolkit.completion import Completer

    from corral.admin import AdminService
    from corral.settings import Settings

PROMPT = "corral> "
EXIT_WORDS = frozenset({"exit", "quit"})
KEY_ARGUMENT = frozenset({"show", "update", "revoke", "delete"})

HELP = """\
Commands (`help COMMAND` or `COMMAND --help` for the options):
  keys create --name NAME [--models a,b] [--rpm N] [--tpm N] [--expires 30d]
                            make a key; it is shown this once
  keys list                 every key, with status, models, limits and last use
  keys show KEY             one key, by id, name, prefix or the key itself
  keys update KEY [...]     change name, description, models, limits, expiry, --enable/--disable
  keys revoke KEY           refuse the key from now on
  keys delete KEY           remove the key
  generatekey               make one key (seed 004)
  generatekeys N            make N keys (seed 004)
  listkeys                  list every key (seed 004)
  removekey KEY             delete a key (seed 004)
  webhooks add URL [--events a,b]
                            subscribe URL; its signing secret is shown this once
  webhooks list             every webhook and its events
  webhooks delete ID        remove a webhook
  webhooks deliveries ID    the newest deliveries to a webhook
  addwebhook URL            subscribe URL (seed 004)
  deletewebhook ID          remove a webhook (seed 004)
  listwebhooks              list every webhook (seed 004)
  usage [--by key|model|backend|day] [--since 7d] [--csv]
                            requests and tokens
  help                      this text
  exit, quit                leave (Ctrl-D too)
Add --json to a command for JSON."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, add_help_option=False)
def commands() -> None:
    """The commands the shell runs."""


commands.add_command(keys)
for _command in SEED_COMMANDS:
    commands.add_command(_command)
commands.add_command(webhooks)
commands.add_command(usage)
for _command in SEED_WEBHOOK_COMMANDS:
    commands.add_command(_command)


class ShellRunner(ServiceRunner):
    """One event loop and one database connection for the whole session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.Runner()
        self._stack = contextlib.AsyncExitStack()
        self.admin: AdminService | None = None

    def open(self) -> None:
        from corral.admin import open_admin

        async def enter() -> AdminService:
            return await self._stack.enter_async_context(open_admin(self.settings))

        self.admin = run_admin(lambda: self._loop.run(enter()), self.settings)

    def run(self, op: Op[T]) -> T:
        admin = self.admin
        assert admin is not None
        return run_admin(lambda: self._loop.run(op(admin)), self.settings)  # type: ignore[arg-type]

    def key_names(self) -> list[str]:
        return [record.name for record in self.run(lambda admin: admin.list_keys())]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._loop.run(self._stack.aclose())
        self._loop.close()


def execute(line: str, runner: ShellRunner) -> bool:
    """Run one line; False when the session should end."""
    try:
        words = shlex.split(line)
    except ValueError as err:
        click.echo(f"error: {err}", err=True)
        return True
    if not words:
        return True
    head = words[0].lower()
    if head in EXIT_WORDS:
        return False
    if head in ("help", "?"):
        if len(words) > 1:
            execute(" ".join([*words[1:], "--help"]), runner)
        else:
            click.echo(HELP)
        return True
    try:
        commands.main(args=words, prog_name="", standalone_mode=False, obj=runner)
    except click.exceptions.NoSuchOption as err:
        click.echo(f"error: {err.format_message()}", err=True)
    except click.UsageError as err:
        message = err.format_message()
        if "No such command" in message:
            message = f"unknown command {words[0]!r}; `help` lists the commands"
        click.echo(f"error: {message}", err=True)
    except click.ClickException as err:
        click.echo(f"error: {err.format_message()}", err=True)
    except (click.exceptions.Exit, click.Abort):
        pass
    return True


def completer(names: Iterable[str]) -> Completer:
    from prompt_toolkit.completion import NestedCompleter

    def options(command: click.Command) -> dict[str, Any]:
        found = [opt for param in command.params for opt in getattr(param, "opts", [])]
        return dict.fromkeys(sorted(o for o in found if o.startswith("--")))

    keyed = dict.fromkeys(names)
    subcommands: dict[str, Any] = {}
    for name, command in keys.commands.items():
        subcommands[name] = (
            {**keyed, **options(command)} if name in KEY_ARGUMENT else options(command)
        )
    tree: dict[str, Any] = {
        "keys": subcommands,
        "generatekey": options(SEED_COMMANDS[0]),
        "generatekeys": None,
        "listkeys": None,
        "removekey": keyed,
        # Seed 004's webhook names run but are not offered: `lis` still completes `listkeys`.
        "webhooks": {name: options(command) for name, command in webhooks.commands.items()},
        "usage": options(usage),
        "help": dict.fromkeys(["keys", *(c.name or "" for c in SEED_COMMANDS)]),
        "exit": None,
        "quit": None,
    }
    return NestedCompleter.from_nested_dict(tree)


def terminal_lines(runner: ShellRunner, history: Path) -> Iterator[str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.shortcuts import CompleteStyle

    # Readline-like: Tab inserts the one completion or lists the candidates, as in bash.
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history)), complete_style=CompleteStyle.READLINE_LIKE
    )
    while True:
        try:
            yield session.prompt(PROMPT, completer=completer(runner.key_names()))
        except KeyboardInterrupt:
            continue  # Ctrl-C clears the line, as in any shell
        except EOFError:
            return


@click.command()
@store_options
def shell(**store: Any) -> None:
    """An interactive prompt for managing keys (seed 004's commands work too)."""
    from corral.cli.main import load_or_exit

    config_file, env_file = store.pop("config_file", None), store.pop("env_file", None)
    settings = load_or_exit(config_file, env_file, store)
    runner = ShellRunner(settings)
    runner.open()
    try:
        if sys.stdin.isatty():
            history = Path(settings.data_dir) / "shell_history"
            history.parent.mkdir(parents=True, exist_ok=True)
            click.echo("corral shell: `help` lists the commands, `exit` leaves.")
            lines: Iterable[str] = terminal_lines(runner, history)
        else:
            lines = (line.rstrip("\n") for line in sys.stdin)
        for line in lines:
            if not execute(line, runner):
                break
    finally:
        runner.close()
