"""Limit settings: corral's own names, the seeds' names, and the checks they turn into."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from corral.auth.principal import Principal
from corral.cli.main import main
from corral.limits.policy import LimitPolicy
from corral.settings import LimitSettings, ScopeLimits, SettingsError, load_settings


def load(env: dict[str, str], **kwargs: object) -> LimitSettings:
    return load_settings(env=env, dotenv_path=None, **kwargs).limits  # type: ignore[arg-type]


def test_limits_are_off_by_default() -> None:
    assert not LimitPolicy(load({})).applies(None)


def test_nested_environment_names_set_each_scope() -> None:
    limits = load({"CORRAL_LIMITS__KEY__REQUESTS": "60", "CORRAL_LIMITS__IP__RATE": "2.5",
                   "CORRAL_LIMITS__KEY_MODEL__TOKENS_PER_DAY": "100000",
                   "CORRAL_LIMITS__ON_STORE_ERROR": "closed"})  # fmt: skip
    assert limits.key.requests == 60
    assert limits.ip.rate == 2.5
    assert limits.key_model.tokens_per_day == 100_000
    assert limits.on_store_error == "closed"


def test_a_bad_limit_names_its_setting() -> None:
    try:
        load({"CORRAL_LIMITS__KEY__REQUESTS": "0"})
    except SettingsError as err:
        assert "CORRAL_LIMITS__KEY__REQUESTS" in str(err)
    else:
        raise AssertionError("a limit of 0 was accepted")


def test_seed001_rate_limit_is_requests_per_client_address(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    seed = {"rateLimit": {"maxRequests": 25, "timeWindowSeconds": 30, "enabled": True}}
    config.write_text(json.dumps(seed))
    limits = load({}, config_file=config)
    assert (limits.ip.requests, limits.ip.window) == (25, 30)


def test_seed002_rate_limit_rps_is_a_smooth_rate() -> None:
    assert load({"RATE_LIMIT_RPS": "20"}).overall.rate == 20


def test_seed004_settings_bring_ten_requests_a_minute_per_key() -> None:
    limits = load({"OLLAMA_URL": "localhost:11434"})
    assert (limits.key.requests, limits.key.window) == (10, 60)
    mine = load({"OLLAMA_URL": "localhost:11434", "CORRAL_LIMITS__KEY__REQUESTS": "100"})
    assert mine.key.requests == 100


def test_seed003_flags_set_requests_per_window() -> None:
    limits = load({}, cli_overrides={"rate_limit": "100", "rate_window": "60"})
    assert (limits.ip.requests, limits.ip.window) == (100, 60)


def test_the_config_command_accepts_seed003_flags() -> None:
    result = CliRunner().invoke(main, ["config", "--rate-limit", "5", "--rate-window", "10"])
    assert result.exit_code == 0, result.output


def test_a_keys_own_limits_replace_the_key_scope() -> None:
    policy = LimitPolicy(LimitSettings(key=ScopeLimits(requests=10, tokens_per_minute=500)))
    own = Principal(7, "ci", rpm=2, max_concurrency=1)
    checks = {c.label: c for c in policy.checks("10.0.0.1", own, "llama3:latest")}
    assert checks["key_requests"].rate.limit == 2
    assert checks["key_tokens_per_minute"].rate.limit == 500
    assert checks["key_concurrency"].key.startswith("key:7:")
    plain = {c.label: c for c in policy.checks("10.0.0.1", Principal(8, "b"), None)}
    assert plain["key_requests"].rate.limit == 10


def test_a_key_with_its_own_limits_is_limited_while_settings_have_none() -> None:
    policy = LimitPolicy(LimitSettings())
    assert not policy.applies(Principal(1, "a"))
    assert policy.applies(Principal(1, "a", tpm=1000))
