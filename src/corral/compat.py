"""The seed gateways' configuration names, mapped onto corral's settings.

corral replaces five earlier gateways (the seeds). People moving over keep their environment and
config files: every name a seed used for something corral has is one row in a table below, with a
converter from the seed's value to raw settings values. Validation stays in
:mod:`corral.settings`, so a bad value is still reported under the seed's name::

    >>> list(from_environment({"GATEWAY_QUEUE_SIZE": "200"}))
    [Mapped(key=('queue_size',), value='200', name='GATEWAY_QUEUE_SIZE')]
    >>> from_seed001_config({"gatewayAddress": "0.0.0.0:8080"}).mapped[1]
    Mapped(key=('port',), value='8080', name='gatewayAddress')

A corral name (``CORRAL_*``) always beats an alias of the same setting. Names left out on purpose,
because they are too generic to claim for corral (a shell or platform sets them for other
programs) or because corral has no such setting yet:

- seed 002 (LlamaGate): ``PORT``, ``TIMEOUT``
  (its ``API_KEY`` is read: people who set it meant to lock the gateway, and ignoring it would
  leave it open);
- seed 000: ``GATEWAY_LISTEN_ADDR`` (only mentioned as a possible extension);
- seed 003 (flags ``--port/-p``, ``--backends/-b``, ``--cache-ttl/-c``, and
  ``--rate-limit/--rate-window`` through :data:`FLAG_ALIASES`) and seed 004 (``-port``,
  ``-ollama-url``) are covered by corral's own flags, see :mod:`corral.cli.main`.

Seed 004 limited every key to 10 requests a minute; its ``OLLAMA_URL`` brings that default
along (a ``CORRAL_LIMITS__KEY__*`` setting still wins).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

Convert = Callable[[Any], Mapping[str, object]]


class Mapped(NamedTuple):
    """A raw value for the setting at ``key``, found under the seed's ``name``."""

    key: tuple[str, ...]
    value: object
    name: str


@dataclass(frozen=True)
class Alias:
    """A seed's name for a setting, and how its value becomes raw settings values."""

    name: str
    seed: str
    convert: Convert


def _to(field: str) -> Convert:
    return lambda value: {field: value}


def _one_backend(value: Any) -> Mapping[str, object]:
    # One upstream URL, not a list: a comma in it is a mistake worth reporting, not a separator.
    return {"backends": [value] if isinstance(value, str) else value}


def _ip_lists(value: Any) -> Mapping[str, object]:
    """Seed 001's ``"security": {"allowIps": [...], "denyIps": [...]}``."""
    if not isinstance(value, Mapping):
        return {"allow_ips": value}  # reported by validation under the seed's name
    return {"allow_ips": value.get("allowIps") or [], "deny_ips": value.get("denyIps") or []}


def _debug(value: Any) -> Mapping[str, object]:
    """``DEBUG=true`` turns on debug logging; anything else leaves the level alone."""
    truthy = str(value).strip().lower() in ("1", "true", "yes", "on")
    return {"log_level": "debug"} if truthy else {}


def _listen_address(value: Any) -> Mapping[str, object]:
    """Go's listen address: ``"0.0.0.0:8080"``, ``":8080"`` (every interface), ``"[::]:8080"``."""
    if not isinstance(value, str) or ":" not in value:
        return {"host": value}
    host, _, port = value.rpartition(":")
    return {"host": host.strip("[]") or "0.0.0.0", "port": port}


def _seed001_metrics(value: Any) -> Mapping[str, object]:
    """``"metrics": {"enabled": true, "endpoint": "/metrics", "namespace": "gateway"}``."""
    if not isinstance(value, Mapping):
        return {"metrics_enabled": value}
    names = {
        "enabled": "metrics_enabled",
        "endpoint": "metrics_path",
        "namespace": "metrics_namespace",
    }
    return {names[k]: v for k, v in value.items() if k in names}


def _seed001_rate_limit(value: Any) -> Mapping[str, object]:
    """``"rateLimit": {"maxRequests": 25, "timeWindowSeconds": 30, "enabled": true}``: requests
    per client address in a fixed window; nothing while ``enabled`` is false."""
    if not isinstance(value, Mapping):
        return {"limits.ip.requests": value}  # reported by validation under the seed's name
    if value.get("enabled") is not True:
        return {}
    found = {"limits.ip.requests": value.get("maxRequests")}
    if "timeWindowSeconds" in value:
        found["limits.ip.window"] = value["timeWindowSeconds"]
    return found


def _seed004_url(value: Any) -> Mapping[str, object]:
    """Seed 004's upstream, and its limit of 10 requests a minute per key."""
    return {**_one_backend(value), "limits.key.requests": 10, "limits.key.window": 60}


# Lowest precedence first: when two aliases of one setting are set, the later row wins. A seed's
# own gateway name beats OLLAMA_HOST, which people also export for the `ollama` command line.
ENV_ALIASES: tuple[Alias, ...] = (
    Alias("OLLAMA_HOST", "002 LlamaGate", _one_backend),
    Alias("OLLAMA_URL", "004 go-ollama-api", _seed004_url),
    Alias("RATE_LIMIT_RPS", "002 LlamaGate", _to("limits.overall.rate")),
    Alias("LOG_LEVEL", "002 LlamaGate", _to("log_level")),
    Alias("DEBUG", "002 LlamaGate", _debug),
    Alias("LOG_FILE", "002 LlamaGate", _to("log_file")),
    Alias("API_KEY", "002 LlamaGate", _to("auth.keys")),
    Alias("GATEWAY_BACKENDS", "000 go_api_gateway_ollama", _to("backends")),
    Alias("GATEWAY_QUEUE_SIZE", "000 go_api_gateway_ollama", _to("queue_size")),
    Alias("GATEWAY_MAX_QUEUE_WAIT_SECONDS", "000 go_api_gateway_ollama", _to("max_queue_wait")),
)

# Seed 001 (ollama-gateway) keeps everything in a config.json.
SEED001_CONFIG_KEYS: tuple[Alias, ...] = (
    Alias("ollamaAddresses", "001 ollama-gateway", _to("backends")),
    Alias("gatewayAddress", "001 ollama-gateway", _listen_address),
    Alias("authHeaderName", "001 ollama-gateway", _to("auth.header")),
    Alias("apiKeys", "001 ollama-gateway", _to("auth.keys")),
    Alias("security", "001 ollama-gateway", _ip_lists),
    Alias("metrics", "001 ollama-gateway", _seed001_metrics),
    Alias("rateLimit", "001 ollama-gateway", _seed001_rate_limit),
)
# Known seed-001 keys corral has no setting for yet: accepted with a warning, so an existing
# config.json still loads. Move a key up to SEED001_CONFIG_KEYS when its feature lands.
SEED001_NOT_YET = frozenset({"logging"})

# Seed 003's command-line flags (by their parameter name) for corral settings.
FLAG_ALIASES = {"rate_limit": "limits.ip.requests", "rate_window": "limits.ip.window"}


class Seed001Config(NamedTuple):
    mapped: list[Mapped]
    ignored: list[str]  # known to seed 001, not supported by corral yet
    unknown: list[str]  # neither: most likely a typo


def from_environment(variables: Mapping[str, str]) -> Iterator[Mapped]:
    """Raw values for the seed aliases set in ``variables``, lowest precedence first."""
    for alias in ENV_ALIASES:
        value = variables.get(alias.name, "")
        # The seeds are Go programs reading os.Getenv, where empty and unset are the same.
        if value.strip():
            for field, raw in alias.convert(value).items():
                yield Mapped(tuple(field.split(".")), raw, alias.name)


def from_seed001_config(data: Mapping[str, Any]) -> Seed001Config:
    """Sort the keys of a seed-001 ``config.json`` into mapped, not yet supported, and unknown."""
    table = {alias.name: alias for alias in SEED001_CONFIG_KEYS}
    found = Seed001Config([], [], [])
    for name, value in data.items():
        if name in table:
            found.mapped.extend(
                Mapped(tuple(field.split(".")), raw, name)
                for field, raw in table[name].convert(value).items()
            )
        else:
            (found.ignored if name in SEED001_NOT_YET else found.unknown).append(name)
    return found
