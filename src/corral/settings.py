"""Typed settings, validated once at start-up.

Sources, lowest to highest precedence::

    defaults < config file (TOML, or a seed-001 config.json) < .env < environment < CLI flags

Every raw value remembers where it came from, so a bad one is reported the way the user spelled it,
one line per problem::

    >>> load_settings(env={"CORRAL_PORT": "abc"}, dotenv_path=None)
    Traceback (most recent call last):
    corral.settings.SettingsError: CORRAL_PORT: must be an integer between 0 and 65535, got 'abc'
    >>> load_settings(env={"CORRAL_BACKENDS": "gpu1=10.0.0.5, 10.0.0.6:11500"}).backends[1].url
    'http://10.0.0.6:11500'

Environment names are ``CORRAL_`` + the field name in upper case; a field of a nested section is
``CORRAL_SECTION__FIELD``. The seed gateways' names are read through :mod:`corral.compat`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_origin
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from corral import compat

logger = logging.getLogger("corral.settings")

ENV_PREFIX = "CORRAL_"
NESTED_DELIMITER = "__"
OLLAMA_PORT = 11434
KiB, MiB = 1024, 1024 * 1024
DEFAULT_BACKEND_URL = f"http://127.0.0.1:{OLLAMA_PORT}"
# Ollama's own default OLLAMA_ORIGINS: local pages and desktop-app webviews may call it.
DEFAULT_CORS_ORIGINS = (
    *(f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0")
      for port in ("", ":*") for scheme in ("http", "https")),
    "app://*", "file://*", "tauri://*", "vscode-webview://*",
)  # fmt: skip

_HOST = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")  # a name, IPv4, or IPv6 (urlsplit lowercases)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "kib": KiB, "mb": 10**6, "mib": MiB}


class SettingsError(Exception):
    """Invalid or unreadable settings; one line per problem, each naming the setting."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(self.problems))


def parse_size(value: object) -> object:
    """Turn ``"64MiB"``, ``"10MB"`` or ``"512"`` into bytes; other values go on to the int check."""
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value.strip().lower())
    if match is None or match[2] not in _SIZE_UNITS:
        raise ValueError("must be a size in bytes such as 1048576, '512KiB', '64MiB' or '10MB'")
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


ByteSize = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]


def normalise_backend_url(raw: str) -> str:
    """``localhost`` / ``localhost:11434`` / ``http://localhost:11434/`` -> ``http://localhost:11434``."""
    text = raw.strip().rstrip("/")
    if not text:
        raise ValueError("a backend URL must not be empty")
    parts = urlsplit(text if "://" in text else f"http://{text}")
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise ValueError("https upstreams are not supported yet; use an http:// URL")
    if scheme != "http":
        raise ValueError(f"a backend URL must start with http://, not {scheme}://")
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        raise ValueError("a backend URL is only http://host:port (no credentials, path or query)")
    try:
        port = parts.port or OLLAMA_PORT
    except ValueError:
        raise ValueError("a backend URL's port must be a number between 1 and 65535") from None
    host = parts.hostname or ""
    if not _HOST.fullmatch(host):
        raise ValueError("a backend URL needs a host name or IP address")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Section(BaseModel):
    """Base of every settings model: frozen, typo-proof, and lenient with text from env and flags.

    A list field also takes a comma-separated string; a ``Literal`` field ignores case.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str) or info.field_name is None:
            return value
        origin = get_origin(cls.model_fields[info.field_name].annotation)
        if origin is list:
            return [item.strip() for item in value.split(",") if item.strip()]
        if origin is Literal:
            return value.strip().lower()
        return value


class BackendSettings(Section):
    """One Ollama server. ``BackendSettings(url="gpu1:11434").name == "gpu1:11434"``.

    As text (env, flags): ``url`` or ``name=url``.
    """

    url: str
    """The server: http://host:port, or host:port."""
    name: str = ""
    """Label in logs and metrics; host:port when not given."""
    max_concurrency: int = Field(default=4, ge=1)
    """Requests sent to this server at once."""

    @model_validator(mode="before")
    @classmethod
    def _from_entry(cls, data: Any) -> Any:
        if isinstance(data, str):
            name, sep, url = data.partition("=")
            named = sep and "/" not in name  # "gpu1=http://..." but not "http://h/?a=b"
            data = {"name": name.strip(), "url": url} if named else {"url": data}
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            url = normalise_backend_url(data["url"])
            data = {**data, "url": url, "name": data.get("name") or url.removeprefix("http://")}
        return data

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or OLLAMA_PORT


def _default_backends() -> list[BackendSettings]:
    return [BackendSettings(url=DEFAULT_BACKEND_URL)]


_PRINTABLE_KEY = re.compile(r"[\x21-\x7e]{1,512}")  # printable ASCII, no spaces
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")  # an HTTP token


class AuthSettings(Section):
    """API keys for clients. Auth is on as soon as a key exists (in the database or here), or
    when ``required`` is set. ``AuthSettings(keys=["sk-local"]).keys[0].get_secret_value()``."""

    required: bool = False
    """Ask every API request for a key even while no key exists yet."""
    header: str | None = Field(default=None, pattern=f"^{_HEADER_NAME.pattern}$")
    """One more header that may carry the key, besides Authorization: Bearer and X-API-Key."""
    keys: list[SecretStr] = Field(default_factory=list)
    """Keys declared in the settings instead of the database (printable ASCII)."""
    refresh_interval: float = Field(default=2.0, gt=0)
    """Seconds between two looks for key changes made elsewhere (CLI, other instances)."""
    flush_interval: float = Field(default=5.0, gt=0)
    """Seconds between two writes of the keys' last use and request and token counters."""

    @field_validator("keys")
    @classmethod
    def _printable_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for index, key in enumerate(keys):
            text = key.get_secret_value()
            if not _PRINTABLE_KEY.fullmatch(text):
                # The key itself is never repeated in the message: it may be a real secret.
                raise ValueError(f"key {index + 1} must be 1-512 printable ASCII characters")
            if not text.strip("*"):
                # What `corral config` prints in place of a secret: never a key anyone can send.
                raise ValueError(f"key {index + 1} is a masked value, not a key")
        return keys


class ScopeLimits(Section):
    """Limits of one scope (everyone together, one client address, one key, one key on one
    model); unset: no such limit. ``ScopeLimits(requests=10, window=60)``: 10 a minute."""

    requests: int | None = Field(default=None, ge=1)
    """Requests per window (a fixed window, starting with the first request)."""
    window: float = Field(default=60.0, gt=0)
    """Seconds of the requests window."""
    rate: float | None = Field(default=None, gt=0)
    """Requests per second, spread evenly (smooth rate, GCRA)."""
    burst: int | None = Field(default=None, ge=1)
    """Requests a smooth rate lets through at once; unset: one second's worth (at least 1)."""
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Prompt plus generated tokens per minute."""
    tokens_per_day: int | None = Field(default=None, ge=1)
    """Prompt plus generated tokens per day."""
    concurrency: int | None = Field(default=None, ge=1)
    """Requests in flight at once."""


class LimitSettings(Section):
    """Rate and token limits per scope; a key's own rpm, tpm and max_concurrency override the
    key scope. ``LimitSettings(key=ScopeLimits(requests=60))``."""

    overall: ScopeLimits = Field(default_factory=ScopeLimits)
    """Limits on every request together (global)."""
    ip: ScopeLimits = Field(default_factory=ScopeLimits)
    """Limits per client address."""
    key: ScopeLimits = Field(default_factory=ScopeLimits)
    """Limits per API key (requests without a key count per client address here)."""
    key_model: ScopeLimits = Field(default_factory=ScopeLimits)
    """Limits per API key and model."""
    max_tokens: int = Field(default=2048, ge=1)
    """Generated tokens reserved for a request that sets no num_predict/max_tokens while a
    token limit applies; corral then sets num_predict to it, so the reservation holds."""
    on_store_error: Literal["open", "closed"] = "open"
    """When the shared limiter (Redis) cannot be reached: open lets requests through with a
    warning and a metric; closed answers 503."""


def _check_networks(values: list[str]) -> list[str]:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR range") from None
    return values


def _check_database_url(url: str | None) -> str | None:
    if url is not None and not re.match(r"(sqlite|postgres|postgresql)(\+\w+)?://", url):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    return url


class UsageSettings(Section):
    """Usage accounting: a record per finished request, written to the database in batches."""

    enabled: bool = True
    """Record usage (seed 004's apiUsage); off: nothing is queued or written."""
    queue_size: int = Field(default=10_000, ge=1)
    """Records waiting for the writer; beyond this they are dropped and counted."""
    batch_size: int = Field(default=500, ge=1)
    """Records written per statement."""
    flush_interval: float = Field(default=1.0, gt=0)
    """Seconds between two writes when the queue has not reached batch_size."""


class WebhookSettings(Section):
    """Webhook delivery through the database outbox."""

    enabled: bool = True
    """Deliver webhooks from this instance (events are queued either way)."""
    timeout: float = Field(default=5.0, gt=0)
    """Seconds a receiver has to answer a post."""
    max_attempts: int = Field(default=10, ge=1)
    """Posts of one delivery before it is given up (kept with its last error)."""
    interval: float = Field(default=1.0, gt=0)
    """Seconds between two looks at the outbox for due deliveries."""
    queue_size: int = Field(default=10_000, ge=1)
    """Events waiting to be written to the outbox; beyond this they are dropped and counted."""


class Settings(Section):
    """Everything corral needs to start. Build one with :func:`load_settings`.

    >>> Settings(port=9000).model_copy(update={"host": "0.0.0.0"}).host
    '0.0.0.0'
    """

    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port to listen on; 0 picks a free one."""
    # Declared before `backends`: its validator reads this from the fields validated so far.
    backend_max_concurrency: int | None = Field(default=None, ge=1)
    """max_concurrency of the backends that do not set their own."""
    backends: list[BackendSettings] = Field(
        default_factory=_default_backends, min_length=1, validate_default=True
    )
    """The Ollama servers: url or name=url, comma-separated."""
    strategy: Literal["warm", "least_busy", "round_robin"] = "warm"
    """How a backend is picked among the candidates."""
    queue_size: int = Field(default=100, ge=0)
    """Requests that may wait for a free backend."""
    max_queue_wait: float = Field(default=60.0, ge=0)
    """Seconds a request may wait in the queue; 0 = unlimited."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to open a connection to a backend."""
    read_timeout: float = Field(default=300.0, gt=0)
    """Seconds to wait for a backend's response headers, and between two chunks."""
    max_body_size: ByteSize = 64 * MiB
    """Largest request body, in bytes ("64MiB" works too)."""
    max_header_size: ByteSize = 64 * KiB
    """Largest request head (request line and headers), in bytes."""
    max_headers: int = Field(default=100, ge=1)
    """Most header lines in one request."""
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client may take to send its request head."""
    keepalive_timeout: float = Field(default=75.0, gt=0)
    """Seconds an idle client connection stays open."""
    max_failover_tries: int = Field(default=3, ge=1)
    """Backends tried for one request before its first byte reaches the client."""
    health_interval: float = Field(default=5.0, gt=0)
    """Seconds between two health checks of a backend (version, models, loaded models)."""
    health_timeout: float = Field(default=2.0, gt=0)
    """Seconds a health probe may take before the backend counts as down."""
    breaker_failures: int = Field(default=3, ge=1)
    """Failures in a row (refused, timeout, 5xx, broken stream) that open a backend's circuit."""
    breaker_cooldown: float = Field(default=10.0, gt=0)
    """Seconds an open circuit keeps traffic away before one trial request."""
    model_load_estimate: float = Field(default=5.0, ge=0)
    """Seconds a cold model is assumed to take to load, until corral has seen it load."""
    cors_origins: list[str] = Field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))
    """Browser origins allowed to call corral; * is a wildcard, "*" alone allows any."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics."""
    metrics_path: str = Field(default="/metrics", pattern=r"^/[^?#\s]*$")
    """Path of the Prometheus metrics."""
    metrics_namespace: str = Field(default="gateway", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    """Prefix of the request series (gateway_requests_total...), as the seed gateways name them."""
    metrics_by_ip: bool = False
    """Also count requests per client address; off: one series per address is unbounded."""
    metrics_require_token: bool = False
    """Ask for the admin token on the metrics path too."""
    admin_token: SecretStr | None = None
    """Token for the admin API (/admin/*); unset: the admin API is open to loopback only."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """debug, info, warning or error."""
    log_file: Path | None = None
    """Write logs to this file (rotated by size) instead of standard error."""
    log_max_bytes: ByteSize = 10 * MiB
    """Size at which the log file is rotated."""
    log_backups: int = Field(default=5, ge=0)
    """Rotated log files kept."""
    data_dir: Path = Path("./data")
    """Where corral keeps its files."""
    database_url: Annotated[str | None, AfterValidator(_check_database_url)] = None
    """Where API keys (and usage) are stored; unset: an SQLite file corral.db in data_dir."""
    redis_url: str | None = None
    """Redis shared by every instance (key revocation notices, cache...); unset: in-process only."""
    redis_prefix: str = "corral:"
    """Prefix of every Redis key and channel corral uses."""
    cache_mode: Literal["deterministic", "all", "off"] = "deterministic"
    """Answers cached: deterministic (embeddings; temperature 0 or a fixed seed), all, or off."""
    cache_ttl: float = Field(default=3600.0, gt=0)
    """Seconds a cached answer is served (seed 003's --cache-ttl)."""
    cache_max_size: ByteSize = 128 * MiB
    """Bytes of answers the in-process cache holds; with redis_url the cache is in Redis."""
    cache_max_entry_size: ByteSize = 4 * MiB
    """Largest answer that is cached."""
    auth: AuthSettings = Field(default_factory=AuthSettings)
    """API keys for clients."""
    limits: LimitSettings = Field(default_factory=LimitSettings)
    """Rate, token and concurrency limits; kept in Redis when redis_url is set."""
    allow_ips: Annotated[list[str], AfterValidator(_check_networks)] = Field(default_factory=list)
    """Client addresses or CIDR ranges allowed in; empty: every address not denied."""
    deny_ips: Annotated[list[str], AfterValidator(_check_networks)] = Field(default_factory=list)
    """Client addresses or CIDR ranges refused with 403; deny wins over allow."""
    trusted_proxies: Annotated[list[str], AfterValidator(_check_networks)] = Field(
        default_factory=list
    )
    """Proxies whose X-Forwarded-For / Forwarded headers are believed for the client address."""
    usage: UsageSettings = Field(default_factory=UsageSettings)
    """Usage accounting (corral usage, GET /admin/usage)."""
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    """Webhook delivery (corral webhooks, /admin/webhooks)."""

    @field_validator("backends")
    @classmethod
    def _complete_backends(
        cls, backends: list[BackendSettings], info: ValidationInfo
    ) -> list[BackendSettings]:
        default = info.data.get("backend_max_concurrency")
        if default is not None:
            backends = [
                b if "max_concurrency" in b.model_fields_set
                else b.model_copy(update={"max_concurrency": default})
                for b in backends
            ]  # fmt: skip
        seen: set[str] = set()
        for backend in backends:
            if backend.name in seen:
                raise ValueError(f"backend names must be unique; {backend.name!r} is used twice")
            seen.add(backend.name)
        return backends


# -- loading -------------------------------------------------------------------------------------

Key = tuple[str, ...]


class Origin(NamedTuple):
    """Where a raw value came from, spelled as its source spells it."""

    name: str  # "CORRAL_PORT", "port", "--port", "GATEWAY_BACKENDS", "gatewayAddress"
    where: str = ""  # the file, if any: "config.toml", ".env"
    exact: bool = False  # files name the exact item inside the value: backends[0].url

    def describe(self, rest: tuple[str | int, ...]) -> str:
        name = self.name + _spell(rest) if self.exact else self.name
        return f"{name} ({self.where})" if self.where else name


Layer = dict[Key, tuple[object, Origin]]


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    dotenv_path: Path | None = Path(".env"),
    cli_overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read every source, validate once, and return the effective settings.

    ``cli_overrides`` are keyed by field name (``"port"``, or ``"auth.required"`` for a section);
    ``None`` values mean "flag not given". Raises :class:`SettingsError`.
    """
    merged: Layer = {}
    if config_file is not None:
        merged.update(_config_file_layer(config_file))
    merged.update(_environment_layer(os.environ if env is None else env, dotenv_path))
    for name, value in (cli_overrides or {}).items():
        if value is not None:
            key = tuple(compat.FLAG_ALIASES.get(name, name).split("."))
            merged[key] = (value, Origin("--" + re.sub(r"[._]", "-", name)))
    try:
        return Settings.model_validate(_nest(merged))
    except ValidationError as exc:
        raise SettingsError([_describe(error, merged) for error in exc.errors()]) from exc


def _config_file_layer(path: Path) -> Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    if path.suffix.lower() == ".json":
        return _seed001_layer(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    layer: Layer = {}
    _flatten(data, (), layer, path.name)
    return layer


def _flatten(table: Mapping[str, Any], prefix: Key, layer: Layer, where: str) -> None:
    for name, value in table.items():
        key = (*prefix, name)
        if isinstance(value, dict) and _section_at(key) is not None:
            _flatten(value, key, layer, where)
        else:
            layer[key] = (value, Origin(".".join(key), where, exact=True))


def _seed001_layer(text: str, path: Path) -> Layer:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object of settings")
    found = compat.from_seed001_config(data)
    if found.unknown:
        raise SettingsError([f"{name} ({path.name}): unknown setting" for name in found.unknown])
    for name in found.ignored:
        logger.warning("%s (%s) is not supported by corral yet; ignored", name, path.name)
    return {m.key: (m.value, Origin(m.name, path.name, exact=True)) for m in found.mapped}


def _environment_layer(environ: Mapping[str, str], dotenv_path: Path | None) -> Layer:
    # Merged by name first: a real environment variable beats the same name in .env, and a
    # CORRAL_* name beats a seed alias wherever each of them was set.
    variables: dict[str, tuple[str, str]] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        for name, value in dotenv_values(dotenv_path).items():
            if value is not None:
                variables[name] = (value, dotenv_path.name)
    variables.update((name, (value, "")) for name, value in environ.items())
    layer: Layer = {}
    for found in compat.from_environment({name: value for name, (value, _) in variables.items()}):
        layer[found.key] = (found.value, Origin(found.name, variables[found.name][1]))
    for name, (value, where) in variables.items():
        if name.startswith(ENV_PREFIX):
            key = tuple(name[len(ENV_PREFIX) :].lower().split(NESTED_DELIMITER))
            if _section_at(key[:-1]) is not None and _field_at(key) is not None:
                layer[key] = (value, Origin(name, where))
    return layer


def _nest(layer: Layer) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, (value, _) in layer.items():
        node = root
        for name in key[:-1]:
            child = node.get(name)
            node = child if isinstance(child, dict) else node.setdefault(name, {})
        node[key[-1]] = value
    return root


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _field_at(loc: Sequence[str | int]) -> FieldInfo | None:
    """The field a validation error location points at, looking through lists and sections."""
    model: type[BaseModel] | None = Settings
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = _inner_model(field.annotation)
    return field


def _section_at(key: Key) -> type[BaseModel] | None:
    """The settings section (a model, not a list of them) at ``key``; ``()`` is Settings."""
    field = _field_at(key)
    if not key:
        return Settings
    if field is None or get_origin(field.annotation) is list:
        return None
    return _inner_model(field.annotation)


# -- one clear line per problem -----------------------------------------------------------------

_NUMBER_ERRORS = frozenset({
    "int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "finite_number",
    "greater_than", "greater_than_equal", "less_than", "less_than_equal",
})  # fmt: skip
_PLAIN_PROBLEMS = {
    "missing": "is required",
    "extra_forbidden": "unknown setting",
    "too_short": "must not be empty",
    "bool_parsing": "must be true or false",
}


def _describe(error: ErrorDetails, layer: Layer) -> str:
    loc = error["loc"]
    where = _spell(loc).lstrip(".") or "settings"
    for size in range(len(loc), 0, -1):
        key = tuple(part for part in loc[:size] if isinstance(part, str))
        if len(key) == size and key in layer:
            where = layer[key][1].describe(loc[size:])
            break
    problem, value = _problem(error), error["input"]
    field = _field_at(loc)
    secret = field is not None and SecretStr in (field.annotation, *get_args(field.annotation))
    if error["type"] != "extra_forbidden" and isinstance(value, str | int | float) and not secret:
        problem += f", got {value!r}"
    return f"{where}: {problem}"


def _problem(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    field = _field_at(error["loc"])
    if kind in _NUMBER_ERRORS and field is not None:
        return "must be " + _expected_number(field)
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    return _PLAIN_PROBLEMS.get(kind) or error["msg"][:1].lower() + error["msg"][1:]


def _expected_number(field: FieldInfo) -> str:
    kind = "an integer" if int in (field.annotation, *get_args(field.annotation)) else "a number"
    bounds = {
        name: getattr(rule, name)
        for rule in field.metadata
        for name in ("ge", "gt", "le", "lt")
        if getattr(rule, name, None) is not None
    }
    if "ge" in bounds and "le" in bounds:
        return f"{kind} between {bounds['ge']} and {bounds['le']}"
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " ".join([kind, *(f"{signs[name]} {bound}" for name, bound in bounds.items())])


def _spell(loc: Sequence[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
