"""The cache's settings: defaults, environment, seed 003's --cache-ttl flag, and bad values."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from corral.cache.memory import MemoryCache
from corral.cache.store import open_store
from corral.cli.main import main
from corral.settings import Settings, SettingsError, load_settings


def test_defaults_cache_deterministic_answers_for_an_hour_in_memory() -> None:
    settings = Settings()
    assert (settings.cache_mode, settings.cache_ttl) == ("deterministic", 3600.0)
    store = open_store(settings)
    assert isinstance(store, MemoryCache) and store.max_bytes == settings.cache_max_size


def test_environment_names() -> None:
    settings = load_settings(
        env={"CORRAL_CACHE_MODE": "ALL", "CORRAL_CACHE_TTL": "30", "CORRAL_CACHE_MAX_SIZE": "1MiB"},
        dotenv_path=None,
    )
    assert (settings.cache_mode, settings.cache_ttl, settings.cache_max_size) == ("all", 30, 1 << 20)


@pytest.mark.parametrize("flag", ["--cache-ttl", "-c"])
def test_seed_003s_cache_ttl_flag_is_accepted(flag: str) -> None:
    result = CliRunner().invoke(main, ["config", "--json", flag, "45", "--cache-mode", "off"], env={})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["cache_ttl"], shown["cache_mode"]) == (45, "off")


def test_a_bad_value_names_the_setting_as_written() -> None:
    with pytest.raises(SettingsError, match="CORRAL_CACHE_MODE: must be one of"):
        load_settings(env={"CORRAL_CACHE_MODE": "sometimes"}, dotenv_path=None)
    with pytest.raises(SettingsError, match=r"--cache-ttl: must be a number > 0"):
        load_settings(env={}, dotenv_path=None, cli_overrides={"cache_ttl": "0"})
