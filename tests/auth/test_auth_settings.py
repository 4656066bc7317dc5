"""Access settings from every source, the seed gateways' names included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.admin import check_name, parse_expiry, parse_limit, parse_models
from corral.errors import BadRequest
from corral.settings import SettingsError, load_settings

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def load(env: dict[str, str], **kwargs: object):  # type: ignore[no-untyped-def]
    return load_settings(env=env, dotenv_path=None, **kwargs)  # type: ignore[arg-type]


def test_flat_and_nested_environment_names() -> None:
    settings = load({
        "CORRAL_ALLOW_IPS": "10.0.0.0/8, 2001:db8::/32",
        "CORRAL_DENY_IPS": "10.0.0.5",
        "CORRAL_TRUSTED_PROXIES": "127.0.0.1",
        "CORRAL_DATABASE_URL": "postgresql://corral@db/corral",
        "CORRAL_REDIS_URL": "redis://cache:6379/0",
        "CORRAL_AUTH__REQUIRED": "true",
        "CORRAL_AUTH__HEADER": "X-Corral-Key",
        "CORRAL_AUTH__KEYS": "sk-one,sk-two",
        "CORRAL_AUTH__REFRESH_INTERVAL": "0.5",
    })  # fmt: skip
    assert settings.allow_ips == ["10.0.0.0/8", "2001:db8::/32"]
    assert (settings.deny_ips, settings.trusted_proxies) == (["10.0.0.5"], ["127.0.0.1"])
    assert settings.database_url == "postgresql://corral@db/corral"
    assert settings.redis_url == "redis://cache:6379/0"
    auth = settings.auth
    assert (auth.required, auth.header, auth.refresh_interval) == (True, "X-Corral-Key", 0.5)
    assert [k.get_secret_value() for k in auth.keys] == ["sk-one", "sk-two"]


def test_seed_002_api_key_locks_the_gateway() -> None:
    settings = load({"API_KEY": "sk-llamagate"})
    assert [k.get_secret_value() for k in settings.auth.keys] == ["sk-llamagate"]
    both = load({"API_KEY": "sk-llamagate", "CORRAL_AUTH__KEYS": "sk-corral"})
    assert [k.get_secret_value() for k in both.auth.keys] == ["sk-corral"]


def test_seed_001_config_json_keys_header_and_ip_lists(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "ollamaAddresses": ["http://localhost:11434"],
        "authHeaderName": "Authorization",
        "apiKeys": ["ahP7DieD7rNpTUa6No--iJpOaXY3TDK8dIjKg0cp-hI="],
        "security": {"allowIps": ["192.168.0.0/16"], "denyIps": ["192.168.1.66"]},
    }))  # fmt: skip
    settings = load({}, config_file=config)
    assert settings.auth.header == "Authorization"
    assert settings.auth.keys[0].get_secret_value().startswith("ahP7")
    assert (settings.allow_ips, settings.deny_ips) == (["192.168.0.0/16"], ["192.168.1.66"])


def test_toml_auth_section(tmp_path: Path) -> None:
    config = tmp_path / "corral.toml"
    config.write_text('deny_ips = ["203.0.113.0/24"]\n[auth]\nrequired = true\nkeys = ["sk-1"]\n')
    settings = load({}, config_file=config)
    assert settings.auth.required and settings.deny_ips == ["203.0.113.0/24"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CORRAL_ALLOW_IPS": "10.0.0.0/33"}, "CORRAL_ALLOW_IPS: '10.0.0.0/33' is not an IP"),
        ({"CORRAL_TRUSTED_PROXIES": "proxy.local"}, "CORRAL_TRUSTED_PROXIES: 'proxy.local' is"),
        ({"CORRAL_DATABASE_URL": "mysql://x/y"}, "CORRAL_DATABASE_URL: must be a sqlite:///"),
        ({"CORRAL_AUTH__HEADER": "X Key"}, "CORRAL_AUTH__HEADER: "),
        ({"API_KEY": "has space"}, "API_KEY: key 1 must be 1-512 printable ASCII characters"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(env)
    assert str(err.value).startswith(message)


def test_a_bad_key_in_settings_is_not_repeated_in_the_error() -> None:
    with pytest.raises(SettingsError) as err:
        load({"CORRAL_AUTH__KEYS": "good,bad key\twith-secret-part"})
    assert "with-secret-part" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", NOW + timedelta(minutes=90)),
        ("12h", NOW + timedelta(hours=12)),
        ("30d", NOW + timedelta(days=30)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2027-01-31", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-31T12:00:00+02:00", datetime(2027, 1, 31, 10, tzinfo=UTC)),
        ("never", None),
        ("", None),
        (None, None),
    ],
)
def test_expiry_forms(text: str | None, expected: datetime | None) -> None:
    assert parse_expiry(text, NOW) == expected


def test_input_rules() -> None:
    assert parse_models("llama3.2, qwen* ,llama3.2") == ("llama3.2", "qwen*")
    assert parse_models("") is None and parse_models([]) is None
    assert parse_limit("60", "rpm") == 60 and parse_limit(0, "rpm") is None
    assert parse_limit("none", "rpm") is None
    for bad in ["-1", 1.5, True, "x"]:
        with pytest.raises(BadRequest):
            parse_limit(bad, "rpm")
    assert check_name(" ci-bot@team.a:1 ") == "ci-bot@team.a:1"
    for bad_name in ["", "123", "corral_x", "a b", "x" * 65, "-lead"]:
        with pytest.raises(BadRequest):
            check_name(bad_name)


def test_a_masked_value_is_never_taken_for_a_key() -> None:
    """`corral config` prints secrets as asterisks; loading that listing back must not make
    "**********" a key anyone could send."""
    with pytest.raises(SettingsError) as err:
        load({"CORRAL_AUTH__KEYS": "**********"})
    assert "masked value" in str(err.value)
