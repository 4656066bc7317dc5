"""The limits stage of the request flow (DESIGN.md §3, step 4): after auth, before the cache
and the queue.

:meth:`LimitStage.admit` takes one unit of every request limit that applies, a reservation of
tokens from every token budget, and a slot from the concurrency limit, each atomically in the
limiter. The first denial gives back what was taken and answers 429. A reservation is the
prompt's estimated size plus the most the request may generate (``num_predict``/``max_tokens``,
set to ``limits.max_tokens`` when the request names none), so concurrent requests overshoot a
token budget by at most one request's cap. :meth:`Admission.end` settles it with the real counts.

Example::

    call, admission = await stage.admit(call, request, extra_headers)
    ...
    admission.end(used_tokens)      # None: keep the reservation (the count is unknown)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from corral.errors import RateLimited, Unavailable
from corral.limits.memory import MemoryLimiter
from corral.limits.policy import Check, LimitPolicy
from corral.limits.rate import Decision, Limiter, LimiterUnavailable

if TYPE_CHECKING:
    from corral.auth.principal import Principal
    from corral.context import Call
    from corral.http.messages import HeaderList, Request
    from corral.observability.metrics import Metrics
    from corral.settings import LimitSettings

log = logging.getLogger("corral.limits")

# Where each generating endpoint takes its length limit.
_LENGTH_FIELD = {
    "/api/generate": "num_predict",
    "/api/chat": "num_predict",
    "/v1/chat/completions": "max_tokens",
    "/v1/completions": "max_tokens",
    "/v1/responses": "max_output_tokens",
    "/v1/messages": "max_tokens",
}
# Seconds between two warnings that the shared limiter is unreachable.
_WARN_EVERY = 10.0


def asked_length(call: Call) -> int | None:
    """The most tokens ``call`` asks to generate, or ``None`` when it sets no limit."""
    field = _LENGTH_FIELD.get(call.endpoint)
    if field is None:
        return None
    if field == "num_predict":
        options = call.fields.get("options")
        value = options.get("num_predict") if isinstance(options, dict) else None
    else:
        value = call.fields.get("max_completion_tokens", call.fields.get(field))
    # Ollama reads -1 (and -2) as "no limit".
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def with_length(call: Call, tokens: int) -> Call:
    """``call`` with its length limit set to ``tokens``, body included."""
    field = _LENGTH_FIELD[call.endpoint]
    fields = dict(call.fields)
    if field == "num_predict":
        options = fields.get("options")
        fields["options"] = {**(options if isinstance(options, dict) else {}), field: tokens}
    else:
        fields[field] = tokens
    return dataclasses.replace(call, body=orjson.dumps(fields), fields=fields)


def prompt_estimate(call: Call) -> int:
    # Ollama's tokens average about four bytes of text; a third of the body errs high, and the
    # reservation is settled with the real count anyway.
    return len(call.body) // 3 + 1


class Admission:
    """What a request took from the limits; :meth:`end` gives back what it did not use."""

    __slots__ = ("_stage", "_taken", "reserved")

    def __init__(self, stage: LimitStage, taken: list[tuple[Check, int]], reserved: int) -> None:
        self._stage = stage
        self._taken = taken
        self.reserved = reserved

    def end(self, used_tokens: int | None) -> None:
        """Settle: token budgets keep ``used_tokens`` (0 for a cached answer or a failure
        before any backend answered; ``None`` keeps the whole reservation), concurrency slots
        are given back. Runs in the background; never raises."""
        refunds = []
        for check, cost in self._taken:
            if check.counts == "tokens":
                if used_tokens is not None and used_tokens != cost:
                    refunds.append((check, cost - used_tokens))
            elif check.counts == "concurrency":
                refunds.append((check, cost))
        self._taken = []
        if refunds:
            self._stage.settle(refunds)


class LimitStage:
    """Runs the checks of :class:`LimitPolicy` against one :class:`Limiter`."""

    def __init__(self, limiter: Limiter, settings: LimitSettings, metrics: Metrics) -> None:
        self.limiter = limiter
        self.metrics = metrics
        # Told of every denial (the webhooks' limit.exceeded event): name of the limit, details.
        self.on_denied: Callable[[str, dict[str, Any]], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_at = -math.inf
        self.configure(settings)

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    @limiter.setter
    def limiter(self, limiter: Limiter) -> None:
        self._limiter = limiter
        # In-process counts need no await: checked and settled inline, with no task per request.
        self._inline = limiter if isinstance(limiter, MemoryLimiter) else None

    def configure(self, settings: LimitSettings) -> None:
        self.policy = LimitPolicy(settings)
        self.fail_open = settings.on_store_error == "open"

    def applies(self, principal: Principal | None) -> bool:
        return self.policy.applies(principal)

    async def admit(
        self, call: Call, request: Request, headers: HeaderList
    ) -> tuple[Call, Admission]:
        """Take what ``call`` needs from every limit, or raise ``RateLimited`` (429).

        Adds the ``X-RateLimit-*`` headers to ``headers`` either way."""
        state = request.state
        checks = self.policy.checks(state["client_ip"], state.get("principal"), call.model_key)
        reserve = 0
        if any(check.counts == "tokens" for check in checks):
            length = asked_length(call)
            if length is None and call.endpoint in _LENGTH_FIELD:
                length = self.policy.max_tokens
                call = with_length(call, length)
                request.body = call.body
            reserve = prompt_estimate(call) + (length or 0)
        taken: list[tuple[Check, int]] = []
        best: dict[str, tuple[Check, Decision]] = {}
        inline = self._inline
        for check in checks:
            cost = reserve if check.counts == "tokens" else 1
            try:
                if inline is not None:
                    decision = inline.hit_now(check.key, check.rate, cost)
                else:
                    decision = await self._limiter.hit(check.key, check.rate, cost)
            except LimiterUnavailable as err:
                self._store_failed(err, taken)
                continue
            if not decision.allowed:
                await self.give_back([(c, n) for c, n in taken if n])
                self.metrics.limited(check.label)
                if self.on_denied is not None:
                    principal = state.get("principal")
                    self.on_denied(
                        check.name,
                        {
                            "limit": check.name,
                            "key_id": getattr(principal, "key_id", None),
                            "key_name": getattr(principal, "name", None),
                            "client_ip": state.get("client_ip"),
                            "model": call.model,
                        },
                    )
                _add_headers(headers, {check.counts: (check, decision)})
                if cost > check.rate.limit:
                    message = f"request needs about {cost} tokens, more than {check.name}"
                else:
                    message = f"rate limit exceeded: {check.name}"
                raise RateLimited(message, retry_after=decision.retry_after)
            taken.append((check, cost))
            shown = best.get(check.counts)
            if shown is None or decision.remaining < shown[1].remaining:
                best[check.counts] = (check, decision)
        _add_headers(headers, best)
        return call, Admission(self, taken, reserve)

    async def key_usage(self, principal: Principal) -> list[dict[str, object]]:
        """Current use of the limits counted per key (requests per window, tokens, in flight),
        for the admin API and ``corral keys show``; smooth rates have no count to show."""
        report: list[dict[str, object]] = []
        for check in self.policy.checks("", principal, None):
            if check.label.startswith("key_") and check.rate.kind != "smooth":
                used = await self._limiter.usage(check.key)
                report.append({"limit": check.name, "name": check.label,
                               "max": check.rate.limit, "used": int(used)})  # fmt: skip
        return report

    def _store_failed(self, err: LimiterUnavailable, taken: list[tuple[Check, int]]) -> None:
        self.metrics.limiter_error()
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            action = "letting requests through" if self.fail_open else "refusing requests"
            log.warning("limits cannot be checked (%s): %s", err, action)
        if not self.fail_open:
            self.spawn(self.give_back(taken))
            raise Unavailable("rate limits cannot be checked right now", retry_after=1.0)

    def settle(self, refunds: list[tuple[Check, int]]) -> None:
        """Give ``refunds`` back: inline in memory, in an owned task otherwise."""
        inline = self._inline
        if inline is None:
            self.spawn(self.give_back(refunds))
            return
        for check, cost in refunds:
            inline.refund_now(check.key, check.rate, cost)

    async def give_back(self, refunds: list[tuple[Check, int]]) -> None:
        for check, cost in refunds:
            try:
                await self._limiter.refund(check.key, check.rate, cost)
            except LimiterUnavailable as err:
                self.metrics.limiter_error()
                log.warning("a limit could not be settled: %s", err)
                return

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the settlements under way."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def aclose(self) -> None:
        await self.drain()
        await self._limiter.aclose()


_HEADER_NAMES = {
    "requests": (b"X-RateLimit-Limit", b"X-RateLimit-Remaining", b"X-RateLimit-Reset"),
    "tokens": (
        b"X-RateLimit-Limit-Tokens",
        b"X-RateLimit-Remaining-Tokens",
        b"X-RateLimit-Reset-Tokens",
    ),
}


def _add_headers(headers: HeaderList, shown: dict[str, tuple[Check, Decision]]) -> None:
    """The tightest request limit and token budget: limit, units left, seconds to reset."""
    for counts, (check, decision) in shown.items():
        names = _HEADER_NAMES.get(counts)
        if names is None:
            continue
        headers.append((names[0], str(check.rate.limit).encode()))
        headers.append((names[1], str(decision.remaining).encode()))
        headers.append((names[2], str(math.ceil(decision.reset_after)).encode()))
