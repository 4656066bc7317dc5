"""The settings models: every setting with its type, default, bounds and one line of help.

Loading them from files, ``.env``, the environment and flags is :mod:`corral.settings.loading`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    """Usage accounting: every finished request is counted, written to the database in batches."""

    enabled: bool = True
    """Record usage (seed 004's apiUsage); off: nothing is queued or written."""
    granularity: Literal["minute", "request"] = "minute"
    """``minute``: a row per minute, key, model, backend, route and status, with the number of
    requests and their sums (cheap at any rate); ``request``: a row per request, with its id
    and client address (an audit trail; a row insert for every request)."""
    queue_size: int = Field(default=10_000, ge=1)
    """Rows waiting for the writer; beyond this, records are dropped and counted."""
    batch_size: int = Field(default=500, ge=1)
    """Rows written per statement."""
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
