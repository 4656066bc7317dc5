"""Which limits apply to a request: settings per scope, with a key's own limits on top.

A :class:`Check` is one limit for one request: the limiter key, its :class:`Rate`, whether it
counts tokens, and how the limit is named to a client and in metrics. Templates are built once
per settings, and the checks of each client address, key and model once while they stay in a
bounded memo: a request usually only looks its checks up.

Example::

    policy = LimitPolicy(settings.limits)
    checks = policy.checks(client_ip="10.0.0.1", principal=p, model="llama3:latest")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from corral.limits.memory import FixedPart, fixed_parts
from corral.limits.rate import Rate

if TYPE_CHECKING:
    from corral.auth.principal import Principal
    from corral.settings import LimitSettings, ScopeLimits

Scope = Literal["overall", "ip", "key", "key_model"]
Counts = Literal["requests", "tokens", "concurrency"]
MINUTE, DAY = 60.0, 86400.0
_SCOPE_WORDS = {"overall": "in total", "ip": "per client address", "key": "per key",
                "key_model": "per key and model"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Check:
    """One limit on one request; ``name`` is what a client reads, ``label`` what metrics say."""

    key: str
    rate: Rate
    counts: Counts
    name: str
    label: str
    limit_text: bytes = field(init=False, repr=False, compare=False)
    """The limit as a header value."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit_text", b"%d" % self.rate.limit)


# The headers of a limit on an answer, by what it counts: its size, the units left, seconds to
# its reset. Concurrency has none.
HEADER_NAMES: dict[Counts, tuple[bytes, bytes, bytes]] = {
    "requests": (b"X-RateLimit-Limit", b"X-RateLimit-Remaining", b"X-RateLimit-Reset"),
    "tokens": (
        b"X-RateLimit-Limit-Tokens",
        b"X-RateLimit-Remaining-Tokens",
        b"X-RateLimit-Reset-Tokens",
    ),
}


class Shown(NamedTuple):
    """The headers of one kind of limit (requests, tokens) on an answer: the check ``sole``
    speaks for the kind, or, when ``sole`` is -1, the tightest of the checks ``indices``.
    ``limit`` is the header with the size of the first of them, ready made: usually there is
    only one. ``remaining`` and ``reset`` are the names of the other two headers."""

    sole: int
    indices: tuple[int, ...]
    limit: tuple[bytes, bytes]
    remaining: bytes
    reset: bytes


@dataclass(frozen=True, slots=True)
class Plan:
    """The checks on one kind of request, with what admitting and settling it needs to know of
    them, worked out once per plan rather than on every request. Slots, not a named tuple: its
    fields are read on every limited request, and a slot is read in half the time."""

    checks: tuple[Check, ...]
    any_tokens: bool
    """Whether some check counts tokens (then the request reserves tokens)."""
    shown: tuple[Shown, ...]
    """The headers an answer carries, by what the checks count."""
    parts: tuple[tuple[str, Rate, bool], ...]
    """Per check, what a limiter hit needs: the key, the rate, whether it costs the request's
    token reservation (else one unit)."""
    fixed: tuple[FixedPart, ...] | None
    """The parts flattened for a memory limiter's one pass (see ``MemoryLimiter.take``), or
    ``None`` when some check is a smooth rate or shares its key."""
    reserved: tuple[tuple[str, Rate], ...]
    """The token budgets' keys and rates: settled with the real count when the answer ends."""
    held: tuple[tuple[str, Rate], ...]
    """The concurrency limits' keys and rates: their unit is given back when the answer
    ends."""


def _plan(checks: tuple[Check, ...]) -> Plan:
    groups: dict[Counts, list[int]] = {}
    for index, check in enumerate(checks):
        if check.counts != "concurrency":
            groups.setdefault(check.counts, []).append(index)
    shown = tuple(
        Shown(
            indices[0] if len(indices) == 1 else -1,
            tuple(indices),
            (HEADER_NAMES[counts][0], checks[indices[0]].limit_text),
            HEADER_NAMES[counts][1],
            HEADER_NAMES[counts][2],
        )
        for counts, indices in groups.items()
    )
    parts = tuple((c.key, c.rate, c.counts == "tokens") for c in checks)
    return Plan(
        checks,
        any(tokens for _, _, tokens in parts),
        shown,
        parts,
        fixed_parts(parts),
        reserved=tuple((c.key, c.rate) for c in checks if c.counts == "tokens"),
        held=tuple((c.key, c.rate) for c in checks if c.counts == "concurrency"),
    )


# Distinct (client address, key, model) whose checks are remembered; past it, the memo starts
# over (addresses are unbounded). Model names, which clients choose, are remembered only up to
# a sane length.
_MEMO_SIZE = 4096
_MEMO_MODEL_LENGTH = 256


@dataclass(frozen=True, slots=True)
class _Template:
    suffix: str
    rate: Rate
    counts: Counts
    name: str
    label: str


def _describe(rate: Rate, counts: Counts) -> str:
    if counts == "concurrency":
        return f"{rate.limit} concurrent requests"
    if rate.kind == "smooth":
        return f"{rate.limit / rate.window:g} requests per second"
    unit = "tokens" if counts == "tokens" else "requests"
    span = {MINUTE: "minute", DAY: "day"}.get(rate.window, f"{rate.window:g}s")
    return f"{rate.limit} {unit} per {span}"


def _templates(scope: Scope, limits: ScopeLimits) -> list[_Template]:
    found: list[tuple[str, Rate, Counts, str]] = []
    if limits.requests is not None:
        found.append(("r", Rate(limits.requests, limits.window), "requests", "requests"))
    if limits.rate is not None:
        burst = limits.burst or max(1, int(limits.rate))
        # A limit of whole units per window: rate per second scaled to the burst's window.
        rate = Rate(burst, burst / limits.rate, "smooth", burst)
        found.append(("s", rate, "requests", "rate"))
    if limits.tokens_per_minute is not None:
        found.append(("tm", Rate(limits.tokens_per_minute, MINUTE), "tokens", "tokens_per_minute"))
    if limits.tokens_per_day is not None:
        found.append(("td", Rate(limits.tokens_per_day, DAY), "tokens", "tokens_per_day"))
    if limits.concurrency is not None:
        # An hour: how long units held by an instance that died stay counted.
        rate = Rate(limits.concurrency, 3600.0, "concurrent")
        found.append(("c", rate, "concurrency", "concurrency"))
    return [
        _Template(
            f":{suffix}{rate.limit}/{rate.window:g}",
            rate,
            counts,
            f"{_describe(rate, counts)} {_SCOPE_WORDS[scope]}",
            f"{scope}_{what}",
        )
        for suffix, rate, counts, what in found
    ]


class LimitPolicy:
    """The checks for each request, from ``LimitSettings`` and the request's key."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._overall = _templates("overall", settings.overall)
        self._ip = _templates("ip", settings.ip)
        self._key = _templates("key", settings.key)
        self._key_model = _templates("key_model", settings.key_model)
        self.static = bool(self._overall or self._ip or self._key or self._key_model)
        self.max_tokens = settings.max_tokens
        # Keys share few distinct limit sets: each is built once.
        self._overridden: dict[tuple[int | None, ...], list[_Template]] = {}
        self._memo: dict[tuple[object, ...] | str, Plan] = {}

    def applies(self, principal: Principal | None) -> bool:
        """Whether any limit may apply; cheap, for the hot path with limits off."""
        return self.static or (principal is not None and self.applies_to_key(principal))

    def checks(
        self, client_ip: str, principal: Principal | None, model: str | None
    ) -> tuple[Check, ...]:
        """The limits on a request from ``client_ip`` with ``principal``'s key for ``model``."""
        return self.plan(client_ip, principal, model).checks

    def plan(self, client_ip: str, principal: Principal | None, model: str | None) -> Plan:
        """:meth:`checks`, looked up in the memo (built on a miss)."""
        memo_key: tuple[object, ...] | str
        if principal is None and not self._key_model:
            memo_key = client_ip  # the usual request without a key: its address says it all
        else:
            own = (
                None
                if principal is None
                else (principal.label, principal.rpm, principal.tpm, principal.max_concurrency)
            )
            if not self._key_model:
                model = None  # no limit per model: the model changes nothing
            elif model is not None and len(model) > _MEMO_MODEL_LENGTH:
                return _plan(tuple(self._build(client_ip, principal, model)))  # not remembered
            memo_key = (client_ip, own, model)
        found = self._memo.get(memo_key)
        if found is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            found = self._memo[memo_key] = _plan(tuple(self._build(client_ip, principal, model)))
        return found

    def _build(self, client_ip: str, principal: Principal | None, model: str | None) -> list[Check]:
        ip_key = "ip:" + client_ip
        who = "key:" + principal.label if principal is not None else ip_key
        found = [Check("all" + t.suffix, t.rate, t.counts, t.name, t.label) for t in self._overall]
        found += [Check(ip_key + t.suffix, t.rate, t.counts, t.name, t.label) for t in self._ip]
        key_templates = self._key
        if principal is not None and self.applies_to_key(principal):
            key_templates = self._key_overridden(principal)
        found += [Check(who + t.suffix, t.rate, t.counts, t.name, t.label) for t in key_templates]
        if model is not None and self._key_model:
            pair = f"{who}|{model}"
            found += [
                Check(pair + t.suffix, t.rate, t.counts, t.name, t.label) for t in self._key_model
            ]
        return found

    def key_checks(self, principal: Principal) -> list[Check]:
        """The limits counted per key for ``principal`` that keep a count to report (requests
        per window, tokens, in flight; a smooth rate keeps none): for the admin API, ``corral
        keys show`` and the per-key metrics. Empty when no per-key limit applies."""
        if not self._key and not self.applies_to_key(principal):
            return []
        return [
            check
            for check in self.checks("", principal, None)
            if check.label.startswith("key_") and check.rate.kind != "smooth"
        ]

    @staticmethod
    def applies_to_key(principal: Principal) -> bool:
        return (
            principal.rpm is not None
            or principal.tpm is not None
            or principal.max_concurrency is not None
        )

    def _key_overridden(self, principal: Principal) -> list[_Template]:
        """The key scope with the key's own rpm, tpm and max_concurrency in place of the
        settings' requests per window, tokens per minute and concurrency."""
        own = (principal.rpm, principal.tpm, principal.max_concurrency)
        templates = self._overridden.get(own)
        if templates is not None:
            return templates
        base = self.settings.key
        changes: dict[str, object] = {}
        if principal.rpm is not None:
            changes.update(requests=principal.rpm, window=MINUTE)
        if principal.tpm is not None:
            changes["tokens_per_minute"] = principal.tpm
        if principal.max_concurrency is not None:
            changes["concurrency"] = principal.max_concurrency
        templates = self._overridden[own] = _templates("key", base.model_copy(update=changes))
        return templates
