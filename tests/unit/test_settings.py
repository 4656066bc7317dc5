"""Settings: defaults, every source and its precedence, seed aliases, and errors that name the
setting the way its source spells it. No test reads the real environment or the working
directory's .env."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.settings import (
    DEFAULT_CORS_ORIGINS,
    BackendSettings,
    Settings,
    SettingsError,
    load_settings,
    normalise_backend_url,
    parse_size,
)


def load(env: dict[str, str] | None = None, **kwargs: Any) -> Settings:
    kwargs.setdefault("dotenv_path", None)
    return load_settings(env=env or {}, **kwargs)


def error_of(env: dict[str, str] | None = None, **kwargs: Any) -> str:
    with pytest.raises(SettingsError) as caught:
        load(env, **kwargs)
    return str(caught.value)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults ------------------------------------------------------------------------------------


def test_defaults_need_no_source() -> None:
    settings = load()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.backends == [BackendSettings(url="http://127.0.0.1:11434")]
    assert settings.backends[0].name == "127.0.0.1:11434"
    assert settings.backends[0].max_concurrency == 4
    assert settings.strategy == "warm"
    assert (settings.queue_size, settings.max_queue_wait) == (100, 60.0)
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 300.0)
    assert settings.max_body_size == 64 * 1024 * 1024
    assert settings.max_header_size == 64 * 1024
    assert (settings.max_headers, settings.header_timeout, settings.keepalive_timeout) == (
        100,
        10.0,
        75.0,
    )
    assert settings.max_failover_tries == 3
    assert settings.cors_origins == list(DEFAULT_CORS_ORIGINS)
    assert "http://127.0.0.1:*" in settings.cors_origins
    assert "vscode-webview://*" in settings.cors_origins
    assert settings.log_level == "info"
    assert settings.data_dir == Path("data")


def test_settings_are_frozen_and_changed_by_copy() -> None:
    settings = load()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1
    assert settings.model_copy(update={"port": 9000}).port == 9000


@pytest.mark.parametrize("model", [Settings, BackendSettings])
def test_every_setting_has_a_description(model: type[Settings | BackendSettings]) -> None:
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []


# -- precedence: defaults < config file < .env < environment < CLI ------------------------------


@pytest.fixture
def every_layer(tmp_path: Path) -> dict[str, Any]:
    return {
        "config_file": write(tmp_path / "corral.toml", "port = 1001\nqueue_size = 7\n"),
        "dotenv_path": write(tmp_path / ".env", "CORRAL_PORT=1002\n"),
        "env": {"CORRAL_PORT": "1003"},
        "cli_overrides": {"port": 1004},
    }


def test_cli_flag_beats_everything(every_layer: dict[str, Any]) -> None:
    assert load_settings(**every_layer).port == 1004


def test_environment_beats_dotenv_and_file(every_layer: dict[str, Any]) -> None:
    every_layer["cli_overrides"] = {"port": None}  # a flag that was not given
    assert load_settings(**every_layer).port == 1003


def test_dotenv_beats_config_file(every_layer: dict[str, Any]) -> None:
    every_layer.update(env={}, cli_overrides=None)
    assert load_settings(**every_layer).port == 1002


def test_config_file_beats_defaults(every_layer: dict[str, Any]) -> None:
    every_layer.update(env={}, cli_overrides=None, dotenv_path=None)
    settings = load_settings(**every_layer)
    assert (settings.port, settings.queue_size, settings.host) == (1001, 7, "127.0.0.1")


def test_layers_override_per_setting_not_wholesale(every_layer: dict[str, Any]) -> None:
    assert load_settings(**every_layer).queue_size == 7


def test_missing_dotenv_file_is_skipped(tmp_path: Path) -> None:
    assert load(dotenv_path=tmp_path / "absent.env").port == 8080


def test_toml_backends_tables(tmp_path: Path) -> None:
    config = write(
        tmp_path / "corral.toml",
        "backend_max_concurrency = 2\n"
        '[[backends]]\nurl = "gpu1:11434"\nname = "gpu1"\nmax_concurrency = 8\n'
        '[[backends]]\nurl = "http://gpu2:11500/"\n',
    )
    first, second = load(config_file=config).backends
    assert (first.url, first.name, first.max_concurrency) == ("http://gpu1:11434", "gpu1", 8)
    assert (second.url, second.name, second.max_concurrency) == (
        "http://gpu2:11500",
        "gpu2:11500",
        2,
    )


def test_environment_names(tmp_path: Path) -> None:
    settings = load(
        {
            "CORRAL_HOST": "0.0.0.0",
            "CORRAL_PORT": "9000",
            "CORRAL_BACKENDS": "gpu1=10.0.0.5, 10.0.0.6:11500",
            "CORRAL_BACKEND_MAX_CONCURRENCY": "6",
            "CORRAL_STRATEGY": "least_busy",
            "CORRAL_QUEUE_SIZE": "5",
            "CORRAL_MAX_QUEUE_WAIT": "0",
            "CORRAL_CONNECT_TIMEOUT": "1.5",
            "CORRAL_READ_TIMEOUT": "30",
            "CORRAL_MAX_BODY_SIZE": "10MB",
            "CORRAL_CORS_ORIGINS": "https://app.example, http://localhost:*",
            "CORRAL_LOG_LEVEL": "DEBUG",
            "CORRAL_DATA_DIR": str(tmp_path),
            "CORRAL_NOT_A_SETTING": "ignored",
            "CORRAL_PORT__DEEPER": "ignored too",
        }
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert [(b.name, b.url, b.max_concurrency) for b in settings.backends] == [
        ("gpu1", "http://10.0.0.5:11434", 6),
        ("10.0.0.6:11500", "http://10.0.0.6:11500", 6),
    ]
    assert settings.strategy == "least_busy"
    assert (settings.queue_size, settings.max_queue_wait) == (5, 0.0)
    assert (settings.connect_timeout, settings.read_timeout) == (1.5, 30.0)
    assert settings.max_body_size == 10_000_000
    assert settings.cors_origins == ["https://app.example", "http://localhost:*"]
    assert settings.log_level == "debug"
    assert settings.data_dir == tmp_path


def test_empty_list_from_environment_is_empty() -> None:
    assert load({"CORRAL_CORS_ORIGINS": ""}).cors_origins == []


def test_cli_overrides_take_text_or_typed_values() -> None:
    typed = load(cli_overrides={"backends": [BackendSettings(url="a:1")], "max_queue_wait": 2.5})
    text = load(cli_overrides={"backends": "a:1", "max_queue_wait": "2.5"})
    assert typed == text


# -- seed aliases ----------------------------------------------------------------------------------


def test_seed000_gateway_names() -> None:
    settings = load(
        {
            "GATEWAY_BACKENDS": "http://127.0.0.1:11434,http://127.0.0.1:11435",
            "GATEWAY_QUEUE_SIZE": "200",
            "GATEWAY_MAX_QUEUE_WAIT_SECONDS": "30",
        }
    )
    assert [b.url for b in settings.backends] == [
        "http://127.0.0.1:11434",
        "http://127.0.0.1:11435",
    ]
    assert (settings.queue_size, settings.max_queue_wait) == (200, 30.0)


def test_seed002_ollama_host_and_log_level_from_dotenv(tmp_path: Path) -> None:
    dotenv = write(tmp_path / ".env", "OLLAMA_HOST=http://gpu:11434\nLOG_LEVEL=warning\nPORT=1\n")
    settings = load(dotenv_path=dotenv)
    assert [b.url for b in settings.backends] == ["http://gpu:11434"]
    assert settings.log_level == "warning"
    assert settings.port == 8080  # PORT is too generic to claim


def test_seed004_ollama_url() -> None:
    assert load({"OLLAMA_URL": "host.docker.internal:11434"}).backends[0].host == (
        "host.docker.internal"
    )


def test_empty_alias_counts_as_unset() -> None:
    assert load({"OLLAMA_HOST": ""}).backends[0].url == "http://127.0.0.1:11434"


def test_corral_name_beats_alias() -> None:
    env = {"CORRAL_QUEUE_SIZE": "1", "GATEWAY_QUEUE_SIZE": "2", "CORRAL_BACKENDS": "a:1"}
    settings = load({**env, "OLLAMA_HOST": "b:2", "GATEWAY_BACKENDS": "c:3"})
    assert settings.queue_size == 1
    assert [b.url for b in settings.backends] == ["http://a:1"]


def test_corral_name_in_dotenv_beats_alias_in_environment(tmp_path: Path) -> None:
    dotenv = write(tmp_path / ".env", "CORRAL_BACKENDS=a:1\n")
    assert load({"OLLAMA_HOST": "b:2"}, dotenv_path=dotenv).backends[0].url == "http://a:1"


def test_gateway_backends_beats_ollama_host() -> None:
    settings = load({"OLLAMA_HOST": "b:2", "GATEWAY_BACKENDS": "c:3"})
    assert [b.url for b in settings.backends] == ["http://c:3"]


def test_seed001_config_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seed = {
        "ollamaAddresses": ["http://localhost:11434", "gpu2:11434"],
        "gatewayAddress": "0.0.0.0:8081",
        "logging": True,
        "apiKeys": ["secret"],
        "rateLimit": {"maxRequests": 25, "timeWindowSeconds": 30, "enabled": False},
    }
    settings = load(config_file=write(tmp_path / "config.json", json.dumps(seed)))
    assert (settings.host, settings.port) == ("0.0.0.0", 8081)
    assert [b.url for b in settings.backends] == ["http://localhost:11434", "http://gpu2:11434"]
    assert "logging (config.json) is not supported by corral yet" in caplog.text
    assert settings.limits.ip.requests is None  # "enabled": false
    # apiKeys are read now: declared keys, compared in constant time, never logged
    assert [k.get_secret_value() for k in settings.auth.keys] == ["secret"]
    assert "secret" not in caplog.text


def test_seed001_go_style_listen_address(tmp_path: Path) -> None:
    config = write(tmp_path / "config.json", '{"gatewayAddress": ":9001"}')
    assert (load(config_file=config).host, load(config_file=config).port) == ("0.0.0.0", 9001)


def test_seed001_bad_values_name_its_keys(tmp_path: Path) -> None:
    config = write(tmp_path / "config.json", '{"gatewayAddress": "0.0.0.0:http", "olamaAddr": 1}')
    assert error_of(config_file=config) == "olamaAddr (config.json): unknown setting"
    config = write(tmp_path / "config.json", '{"gatewayAddress": "0.0.0.0:http"}')
    assert error_of(config_file=config).startswith(
        "gatewayAddress (config.json): must be an integer"
    )


# -- backend URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("localhost:11434", "http://localhost:11434"),
        ("localhost", "http://localhost:11434"),
        ("http://GPU1:11500/", "http://gpu1:11500"),
        (" http://10.0.0.5 ", "http://10.0.0.5:11434"),
        ("[::1]:11500", "http://[::1]:11500"),
    ],
)
def test_backend_url_is_normalised(raw: str, url: str) -> None:
    assert BackendSettings(url=raw).url == url


def test_backend_name_defaults_to_host_and_port() -> None:
    backend = BackendSettings(url="gpu1")
    assert (backend.name, backend.host, backend.port) == ("gpu1:11434", "gpu1", 11434)
    assert BackendSettings(url="[::1]:1").name == "[::1]:1"


def test_backend_from_name_equals_url_text() -> None:
    assert load({"CORRAL_BACKENDS": "fast=gpu1:11434"}).backends[0] == BackendSettings(
        url="http://gpu1:11434", name="fast"
    )


def test_backend_sets_its_own_concurrency_over_the_default(tmp_path: Path) -> None:
    env = {"CORRAL_BACKEND_MAX_CONCURRENCY": "9"}
    overrides = {"backends": [BackendSettings(url="a", max_concurrency=1), "b"]}
    assert [b.max_concurrency for b in load(env, cli_overrides=overrides).backends] == [1, 9]


def test_backend_max_concurrency_applies_to_the_default_backend() -> None:
    assert load({"CORRAL_BACKEND_MAX_CONCURRENCY": "16"}).backends[0].max_concurrency == 16


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9-]{1,10}){0,2}", fullmatch=True)


@given(host=hosts, port=st.integers(1, 65535), slash=st.sampled_from(["", "/"]))
def test_url_normalisation_is_idempotent_and_scheme_optional(
    host: str, port: int, slash: str
) -> None:
    url = normalise_backend_url(f"{host}:{port}{slash}")
    assert url == f"http://{host}:{port}"
    assert normalise_backend_url(url) == url


# -- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("64MiB", 64 * 2**20), ("10MB", 10**7), ("512KiB", 512 * 1024), ("4096", 4096),
     ("1.5 kib", 1536), (2048, 2048)],
)  # fmt: skip
def test_sizes_take_units(text: str | int, size: int) -> None:
    assert parse_size(text) == size
    assert load({"CORRAL_MAX_BODY_SIZE": str(text)}).max_body_size == size


# -- errors name the setting as the source spells it -----------------------------------------------


def test_bad_port_from_environment() -> None:
    assert error_of({"CORRAL_PORT": "abc"}) == (
        "CORRAL_PORT: must be an integer between 0 and 65535, got 'abc'"
    )


def test_bad_port_from_flag() -> None:
    assert error_of(cli_overrides={"port": 70000}) == (
        "--port: must be an integer between 0 and 65535, got 70000"
    )


def test_negative_queue_size_from_config_file(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", "queue_size = -1\n")
    assert error_of(config_file=config) == (
        "queue_size (config.toml): must be an integer >= 0, got -1"
    )


def test_bad_value_in_dotenv_names_the_file(tmp_path: Path) -> None:
    dotenv = write(tmp_path / ".env", "CORRAL_READ_TIMEOUT=0\n")
    assert (
        error_of(dotenv_path=dotenv) == "CORRAL_READ_TIMEOUT (.env): must be a number > 0, got '0'"
    )


def test_alias_errors_use_the_alias_name() -> None:
    assert error_of({"GATEWAY_QUEUE_SIZE": "many"}).startswith("GATEWAY_QUEUE_SIZE: must be")


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", 'prot = 8080\n[[backends]]\nurll = "x"\n')
    assert set(error_of(config_file=config).splitlines()) == {
        "prot (config.toml): unknown setting",
        "backends[0].url (config.toml): is required",
        "backends[0].urll (config.toml): unknown setting",
    }


def test_https_backend_is_refused_clearly() -> None:
    message = error_of({"CORRAL_BACKENDS": "a:1,https://gpu:11434"})
    assert message.startswith("CORRAL_BACKENDS: https upstreams are not supported yet")
    assert "'https://gpu:11434'" in message


@pytest.mark.parametrize(
    "raw", ["ftp://gpu", "http://gpu:11434/api", "http://user:pw@gpu", "gpu:99999", "a,b"]
)
def test_malformed_backend_urls_are_refused(raw: str) -> None:
    assert error_of({"OLLAMA_HOST": raw}).startswith("OLLAMA_HOST: ")


def test_duplicate_backend_names() -> None:
    message = error_of({"CORRAL_BACKENDS": "gpu=a:1,gpu=b:2"})
    assert message.startswith("CORRAL_BACKENDS: backend names must be unique; 'gpu' is used twice")


def test_no_backends() -> None:
    assert error_of({"CORRAL_BACKENDS": " , "}) == "CORRAL_BACKENDS: must not be empty"


def test_bad_size_string() -> None:
    assert error_of({"CORRAL_MAX_BODY_SIZE": "10 parsecs"}) == (
        "CORRAL_MAX_BODY_SIZE: must be a size in bytes such as 1048576, '512KiB', '64MiB' or "
        "'10MB', got '10 parsecs'"
    )


def test_bad_choice_lists_the_choices() -> None:
    assert error_of({"CORRAL_STRATEGY": "fastest"}) == (
        "CORRAL_STRATEGY: must be one of 'warm', 'least_busy' or 'round_robin', got 'fastest'"
    )


def test_every_problem_is_reported_on_its_own_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load({"CORRAL_PORT": "x", "CORRAL_QUEUE_SIZE": "y", "CORRAL_LOG_LEVEL": "loud"})
    assert [line.split(":")[0] for line in caught.value.problems] == [
        "CORRAL_PORT",
        "CORRAL_QUEUE_SIZE",
        "CORRAL_LOG_LEVEL",
    ]
    assert "pydantic" not in str(caught.value)


def test_unreadable_config_files(tmp_path: Path) -> None:
    assert "cannot read the config file" in error_of(config_file=tmp_path / "absent.toml")
    broken = write(tmp_path / "broken.toml", "port = \n")
    assert "not valid TOML" in error_of(config_file=broken)
    assert "not valid JSON" in error_of(config_file=write(tmp_path / "c.json", "{"))
