"""The ``corral`` command.

    $ corral serve --backends gpu1=10.0.0.5,10.0.0.6:11434 --port 8080
    $ corral config --json            # the effective settings, after every source
    $ corral simulate --port 11434    # a fake Ollama to try things against
    $ corral dev                      # `make run`: serve, or serve a simulator if no Ollama answers

Settings come from ``--config``, ``.env``, the environment and these flags (see
:mod:`corral.settings`); a bad one stops the command with exit code 2 before anything starts.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from corral import __version__
from corral.settings import BackendSettings, Settings, SettingsError, load_settings

Command = TypeVar("Command", bound=Callable[..., Any])

DEMO_MODELS = ("llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest")
DEMO_TOKENS_PER_SECOND = 40.0
DEMO_FIRST_TOKEN_MS = 150.0
# Long enough for a busy Ollama to answer a version request, short enough not to stall `make run`.
PROBE_TIMEOUT = 1.0


# Commands in modules of their own, imported when one of them runs: `corral serve` has no use
# for the key, usage and webhook commands, the admin API's client or the interactive shell.
LAZY_COMMANDS = {
    "backends": "corral.cli.backends:backends",
    "cache": "corral.cli.cache:cache",
    "keys": "corral.cli.keys:keys",
    "shell": "corral.cli.shell:shell",
    "usage": "corral.cli.usage:usage",
    "webhooks": "corral.cli.webhooks:webhooks",
    # seed 004 ran these by name: `corral generatekey`, `corral addwebhook URL`...
    "generatekey": "corral.cli.keys:generatekey",
    "generatekeys": "corral.cli.keys:generatekeys",
    "listkeys": "corral.cli.keys:listkeys",
    "removekey": "corral.cli.keys:removekey",
    "addwebhook": "corral.cli.webhooks:addwebhook",
    "deletewebhook": "corral.cli.webhooks:deletewebhook",
    "listwebhooks": "corral.cli.webhooks:listwebhooks",
}


class LazyGroup(click.Group):
    """A group whose commands named in ``lazy`` are imported only when asked for.

    >>> LazyGroup(lazy={"shell": "corral.cli.shell:shell"}).get_command(None, "shell").name
    'shell'
    """

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self.lazy.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, name = where.split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command), where
        return command


@click.group(
    cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="corral")
def main() -> None:
    """corral: one front door for a fleet of Ollama servers."""


def settings_options(command: Command) -> Command:
    """The flags every command that reads settings takes; each one overrides its setting.

    Values stay text here, so a bad one is reported by the same validation, in the same words,
    whichever source it came from.
    """
    file_type = click.Path(exists=True, dir_okay=False, path_type=Path)
    options = (
        click.option("--config", "config_file", type=file_type, envvar="CORRAL_CONFIG",
                     help="A TOML settings file (or a seed-001 config.json)."),
        click.option("--env-file", type=file_type, help="Read this dotenv file instead of ./.env."),
        click.option("--host", help="Address to listen on."),
        click.option("-p", "--port", help="Port to listen on."),
        click.option("-b", "--backends", help="Ollama servers, comma-separated: url or name=url."),
        click.option("--strategy", help="warm, least_busy or round_robin."),
        click.option("--health-interval", help="Seconds between health checks."),
        click.option("--queue-size", help="Requests that may wait for a free backend."),
        click.option("--max-queue-wait", help="Seconds a request may wait; 0 = unlimited."),
        click.option("--log-level", help="debug, info, warning or error."),
        click.option("--cache-mode", help="deterministic, all or off."),
        click.option("-c", "--cache-ttl", help="Seconds a cached answer is served."),
        click.option("--rate-limit", help="Requests per client address per window."),
        click.option("--rate-window", help="Seconds of the --rate-limit window."),
    )  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def load_or_exit(
    config_file: Path | None, env_file: Path | None, flags: dict[str, Any]
) -> Settings:
    """Load settings from every source, or print each problem and exit with code 2."""
    try:
        return load_settings(
            config_file=config_file, dotenv_path=env_file or Path(".env"), cli_overrides=flags
        )
    except SettingsError as exc:
        for problem in exc.problems:
            click.echo(f"corral: invalid setting: {problem}", err=True)
        raise click.exceptions.Exit(2) from exc


@main.command()
@settings_options
def serve(config_file: Path | None, env_file: Path | None, **flags: str | None) -> None:
    """Run the gateway in front of the configured Ollama servers.

    SIGHUP re-reads the settings from every source and applies them without dropping requests.
    """
    settings = load_or_exit(config_file, env_file, flags)

    def reload() -> Settings:
        return load_settings(
            config_file=config_file, dotenv_path=env_file or Path(".env"), cli_overrides=flags
        )

    run(_serve(settings, reload))


@main.command()
@settings_options
def dev(config_file: Path | None, env_file: Path | None, **flags: str | None) -> None:
    """Serve; if no configured Ollama answers, serve a simulator instead.

    This is what `make run` calls, so trying corral out needs no Ollama. `corral serve` never
    falls back.
    """
    settings = load_or_exit(config_file, env_file, flags)
    run(_dev(settings))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=11434, show_default=True, help="Port to listen on (0: any).")
@click.option("--models", default=",".join(DEMO_MODELS), show_default=True,
              help="Models it pretends to have, comma-separated.")  # fmt: skip
@click.option("--tokens-per-second", default=DEMO_TOKENS_PER_SECOND, show_default=True)
@click.option("--first-token-ms", default=DEMO_FIRST_TOKEN_MS, show_default=True)
@click.option("--exact-lengths", is_flag=True,
              help="num_predict / max_tokens set an answer's length exactly (for load tests);"
                   " by default they only cap it, as in Ollama.")  # fmt: skip
def simulate(
    host: str,
    port: int,
    models: str,
    tokens_per_second: float,
    first_token_ms: float,
    exact_lengths: bool,
) -> None:
    """Run the bundled Ollama simulator, a fake Ollama server."""
    names = [name.strip() for name in models.split(",") if name.strip()]
    run(_simulate(host, port, names, tokens_per_second, first_token_ms / 1000, exact_lengths))


@main.command("config")
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show_config(
    config_file: Path | None, env_file: Path | None, as_json: bool, **flags: str | None
) -> None:
    """Print the effective settings as TOML (a valid config file) or JSON."""
    settings = load_or_exit(config_file, env_file, flags)
    if as_json:
        click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))
    else:
        click.echo(render_toml(settings), nl=False)


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` on uvloop when it is installed; Ctrl-C ends it quietly."""
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(coroutine)
        else:
            uvloop.run(coroutine)
    except KeyboardInterrupt:
        pass


async def _serve(settings: Settings, reload: Callable[[], Settings] | None = None) -> None:
    from corral.app import serve as serve_app

    await serve_app(settings, reload)


async def _dev(settings: Settings) -> None:
    from corral.app import serve as serve_app

    answers = await asyncio.gather(*(answers_ollama(b) for b in settings.backends))
    if any(answers):
        await serve_app(settings)
        return
    from corral.testing.simulator import Simulator

    simulator = Simulator(
        models=list(DEMO_MODELS),
        tokens_per_second=DEMO_TOKENS_PER_SECOND,
        first_token_delay=DEMO_FIRST_TOKEN_MS / 1000,
    )
    await simulator.start("127.0.0.1", 0)
    try:
        tried = ", ".join(backend.url for backend in settings.backends)
        click.echo(
            f"corral: nothing answers at {tried}; started the bundled Ollama simulator at"
            f" {simulator.url} instead (for trying corral out; `corral serve` never does this)",
            err=True,
        )
        backend = BackendSettings(url=simulator.url, name="simulator")
        if settings.backend_max_concurrency is not None:
            backend = backend.model_copy(
                update={"max_concurrency": settings.backend_max_concurrency}
            )
        await serve_app(settings.model_copy(update={"backends": [backend]}))
    finally:
        await simulator.aclose()


async def answers_ollama(backend: BackendSettings) -> bool:
    """Whether ``GET /api/version`` at ``backend`` answers 200 within ``PROBE_TIMEOUT`` seconds."""
    authority = backend.url.removeprefix("http://")
    request = f"GET /api/version HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(backend.host, backend.port)
            try:
                writer.write(request.encode("ascii"))
                status_line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return status_line.split(b" ")[1:2] == [b"200"]


async def _simulate(
    host: str,
    port: int,
    models: list[str],
    tokens_per_second: float,
    first_token_delay: float,
    exact_lengths: bool = False,
) -> None:
    from corral.testing.simulator import Simulator

    simulator = Simulator(
        models=models,
        tokens_per_second=tokens_per_second,
        first_token_delay=first_token_delay,
        exact_lengths=exact_lengths,
    )
    try:
        await simulator.start(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    try:
        click.echo(f"Ollama simulator listening on {simulator.url}")
        await asyncio.Event().wait()
    finally:
        await simulator.aclose()


def render_toml(settings: Settings) -> str:
    """The settings as a TOML config file, each setting under a comment saying what it is.

    ``corral config > corral.toml`` gives a file that loads back to the same settings.
    """
    head: list[str] = []
    tables: list[str] = []
    for name, value in settings.model_dump(mode="json").items():
        description = type(settings).model_fields[name].description
        comment = [f"# {description}"] if description else []
        if value is None:
            head += [*comment, f"# {name} = (not set)"]
        elif _masked(value):
            head += [*comment, f"# {name} = (secret, not shown)"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables += ["", *comment]
            for row in value:
                tables += [f"[[{name}]]", *_toml_pairs(row), ""]
        elif isinstance(value, dict):
            tables += ["", *comment, f"[{name}]", *_toml_pairs(value)]
            for key, inner in value.items():
                if isinstance(inner, dict):  # a section inside a section: limits.ip
                    tables += ["", f"[{name}.{key}]", *_toml_pairs(inner)]
        else:
            head += [*comment, f"{name} = {json.dumps(value)}"]
    return "\n".join([*head, *tables]).rstrip("\n") + "\n"


def _masked(value: Any) -> bool:
    """Secrets print as pydantic's mask; written back they would become that string."""
    masked = "**********"
    return value == masked or (isinstance(value, list) and masked in value)


def _toml_pairs(table: dict[str, Any]) -> list[str]:
    # JSON strings, numbers, booleans and arrays of them are valid TOML as they are.
    lines = []
    for key, value in table.items():
        if _masked(value):
            lines.append(f"# {key} = (secret, not shown)")
        elif value is not None and not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    return lines
