"""The `corral` command: settings from flags and environment, exit code 2 on a bad setting, and
`dev` standing in the simulator only when no Ollama answers. The app and the simulator are
replaced by recording fakes, so these tests start no gateway."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from corral import compat
from corral.cli.main import main
from corral.settings import Settings, load_settings

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CORRAL_* or seed variable of the machine running the tests, and no stray .env."""
    aliases = {alias.name for alias in compat.ENV_ALIASES}
    for name in list(os.environ):
        if name.startswith("CORRAL_") or name in aliases:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


class FakeApp:
    def __init__(self) -> None:
        self.served: list[Settings] = []
        self.reloaders: list[Callable[[], Settings] | None] = []

    async def serve(
        self, settings: Settings, reload: Callable[[], Settings] | None = None
    ) -> None:
        self.served.append(settings)
        self.reloaders.append(reload)


class FakeSimulator:
    instances: list[FakeSimulator] = []

    def __init__(self, models: list[str], tokens_per_second: float, first_token_delay: float):
        self.models = models
        self.url = ""
        self.closed = False
        FakeSimulator.instances.append(self)

    async def start(self, host: str, port: int) -> None:
        self.url = f"http://{host}:{port or 47111}"

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FakeApp:
    fake = FakeApp()
    module = types.ModuleType("corral.app")
    module.serve = fake.serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "corral.app", module)
    return fake


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch) -> type[FakeSimulator]:
    FakeSimulator.instances = []
    module = types.ModuleType("corral.testing.simulator")
    module.Simulator = FakeSimulator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "corral.testing.simulator", module)
    return FakeSimulator


def corral(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def ollama_version_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"version":"0.12.0"}'
            self.send_response(200 if self.path == "/api/version" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- config --------------------------------------------------------------------------------------


def test_config_json_reflects_environment() -> None:
    result = corral(
        "config", "--json",
        env={"CORRAL_PORT": "9100", "CORRAL_BACKENDS": "gpu1=10.0.0.5", "GATEWAY_QUEUE_SIZE": "3"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["port"] == 9100
    assert shown["queue_size"] == 3
    assert shown["backends"] == [
        {"url": "http://10.0.0.5:11434", "name": "gpu1", "max_concurrency": 4}
    ]


def test_config_reads_dotenv_in_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CORRAL_HOST=0.0.0.0\n", encoding="utf-8")
    assert json.loads(corral("config", "--json").stdout)["host"] == "0.0.0.0"


def test_config_flags_override_environment() -> None:
    result = corral("config", "--json", "-p", "9200", env={"CORRAL_PORT": "9100"})
    assert json.loads(result.stdout)["port"] == 9200


def test_config_toml_listing_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    env = {"CORRAL_BACKENDS": "a=gpu1,gpu2:11500", "CORRAL_CORS_ORIGINS": "*", "CORRAL_PORT": "0"}
    result = corral("config", env=env)
    assert result.exit_code == 0, result.output
    assert "[[backends]]" in result.stdout
    listing = tmp_path / "corral.toml"
    listing.write_text(result.stdout, encoding="utf-8")
    expected = load_settings(env=env, dotenv_path=None)
    assert load_settings(config_file=listing, env={}, dotenv_path=None) == expected


def test_config_with_seed001_json(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"ollamaAddresses": ["http://localhost:11434"], "gatewayAddress": ":8081"}')
    shown = json.loads(corral("config", "--json", "--config", str(config)).stdout)
    assert (shown["host"], shown["port"]) == ("0.0.0.0", 8081)


# -- serve ---------------------------------------------------------------------------------------


def test_serve_with_invalid_setting_exits_2_before_starting(app: FakeApp) -> None:
    result = corral("serve", env={"CORRAL_PORT": "abc"})
    assert result.exit_code == 2
    assert "corral: invalid setting: CORRAL_PORT: must be an integer" in result.stderr
    assert "Traceback" not in result.output
    assert app.served == []


def test_serve_reports_the_flag_by_its_name(app: FakeApp) -> None:
    result = corral("serve", "--backends", "https://gpu:11434")
    assert result.exit_code == 2
    assert "invalid setting: --backends: https upstreams are not supported yet" in result.stderr


def test_serve_hands_the_loaded_settings_to_the_app(app: FakeApp) -> None:
    result = corral("serve", "-p", "9300", "-b", "gpu1=a:1,b:2", "--strategy", "Least_Busy")
    assert result.exit_code == 0, result.output
    (settings,) = app.served
    assert settings.port == 9300
    assert [b.name for b in settings.backends] == ["gpu1", "b:2"]
    assert settings.strategy == "least_busy"
    # SIGHUP re-reads the same sources, flags included
    (reload,) = app.reloaders
    assert reload is not None
    assert reload().port == 9300


def test_serve_never_falls_back_to_the_simulator(
    app: FakeApp, simulator: type[FakeSimulator]
) -> None:
    result = corral("serve", "-b", f"127.0.0.1:{unused_port()}")
    assert result.exit_code == 0, result.output
    assert simulator.instances == []
    assert app.served[0].backends[0].port != 47111


# -- dev -----------------------------------------------------------------------------------------


def test_dev_starts_the_simulator_when_nothing_answers(
    app: FakeApp, simulator: type[FakeSimulator]
) -> None:
    silent = f"127.0.0.1:{unused_port()}"
    result = corral("dev", "-b", silent, env={"CORRAL_BACKEND_MAX_CONCURRENCY": "2"})
    assert result.exit_code == 0, result.output
    (sim,) = simulator.instances
    assert sim.closed
    assert f"corral: nothing answers at http://{silent}; started the bundled Ollama simulator" in (
        result.stderr
    )
    assert "`corral serve` never does this" in result.stderr
    (settings,) = app.served
    assert [(b.url, b.max_concurrency) for b in settings.backends] == [(sim.url, 2)]


def test_dev_serves_as_configured_when_ollama_answers(
    app: FakeApp, simulator: type[FakeSimulator], ollama_version_server: str
) -> None:
    backends = f"{ollama_version_server},127.0.0.1:{unused_port()}"
    result = corral("dev", "--backends", backends)
    assert result.exit_code == 0, result.output
    assert simulator.instances == []
    assert [b.url for b in app.served[0].backends] == [
        f"http://{address}" for address in backends.split(",")
    ]


def test_dev_with_invalid_setting_exits_2(app: FakeApp) -> None:
    result = corral("dev", "--queue-size", "-3")
    assert result.exit_code == 2
    assert "--queue-size: must be an integer >= 0, got '-3'" in result.stderr


# -- entry points --------------------------------------------------------------------------------


def test_python_dash_m_corral_help(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "corral", "--help"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Usage: corral" in done.stdout
    for command in ("serve", "dev", "simulate", "config"):
        assert command in done.stdout


def test_version() -> None:
    assert corral("--version").stdout.strip() == "corral, version 0.1.0"


def test_config_listing_never_shows_a_secret() -> None:
    env = {"CORRAL_ADMIN_TOKEN": "top-secret-admin", "API_KEY": "sk-seed-key"}
    result = corral("config", env=env)
    assert result.exit_code == 0, result.output
    assert "top-secret-admin" not in result.output and "sk-seed-key" not in result.output
    assert "# admin_token = (secret, not shown)" in result.output
    assert "**********" not in result.output
