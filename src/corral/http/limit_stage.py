"""The limits stage of the request flow (DESIGN.md §3, step 4): after auth, before the cache
and the queue.

:meth:`LimitStage.admit` takes one unit of every request limit that applies, a reservation of
tokens from every token budget, and a slot from the concurrency limit, all in one atomic step
of the limiter (one round trip with Redis). A denial by any of them takes nothing from the others
and answers 429. A reservation is the
prompt's estimated size plus the most the request may generate (``num_predict``/``max_tokens``,
set to ``limits.max_tokens`` when the request names none), so concurrent requests overshoot a
token budget by at most one request's cap. :meth:`Admission.end` settles it with the real counts.

Example::

    call, admission = await stage.admit(call, request, extra_headers)
    ...
    admission.end(used_tokens)      # None: keep the reservation (the count is unknown)
    admission.relayed(200, state)   # or: with the counts a relayed answer reported

Each key's use of its own limits is also a metric (``corral_key_limit_used`` against
``corral_key_limit``), read when ``/metrics`` is scraped: live from memory, or from a copy that
a background task refreshes from Redis every few seconds, so a scrape never waits on Redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from corral.errors import RateLimited, Unavailable
from corral.limits.memory import MemoryLimiter
from corral.limits.policy import HEADER_NAMES, Check, LimitPolicy, Plan, Shown
from corral.limits.rate import Hit, Limiter, LimiterUnavailable, Verdict
from corral.limits.reservation import reservation
from corral.tasks import cancel

if TYPE_CHECKING:
    from corral.auth.keyring import KeyEntry, KeyRing
    from corral.auth.principal import Principal
    from corral.context import Call
    from corral.http.messages import HeaderList, Request
    from corral.observability.metrics import LimitUse, Metrics
    from corral.settings import LimitSettings

log = logging.getLogger("corral.limits")

# Seconds between two warnings that the shared limiter is unreachable.
_WARN_EVERY = 10.0
# Seconds between two reads of the per-key counts from a shared limiter, for metrics.
_USE_EVERY = 5.0
_ceil = math.ceil


def _usable(entry: KeyEntry, now: float) -> bool:
    """Whether a key may make requests now: not revoked, active, not expired."""
    expired = entry.expires_at is not None and entry.expires_at <= now
    return entry.active and not entry.revoked and not expired


# Header values of the seconds to a window's reset, made once each: resets take under an hour,
# mostly, so there are few of them. Past an hour (day budgets), each is made anew.
_reset_texts: dict[int, bytes] = {}
_RESET_TEXTS_UP_TO = 3600


def _new_reset_text(seconds: int) -> bytes:
    text = b"%d" % seconds
    if seconds <= _RESET_TEXTS_UP_TO:
        _reset_texts[seconds] = text
    return text


def _limit_headers(
    headers: HeaderList,
    shown: Sequence[Shown],
    checks: Sequence[Check],
    decisions: Sequence[Verdict],
) -> None:
    """Add to ``headers`` the headers of each kind of limit in ``shown``, as ``decisions`` (one
    per check of ``checks``) left them: its size, the units left, seconds to its reset."""
    for index, indices, limit, remaining, reset in shown:
        if index < 0:  # several limits of this kind: the tightest speaks for all of them
            index = min(indices, key=lambda i: decisions[i][1])
            limit = (limit[0], checks[index].limit_text)
        decision = decisions[index]
        seconds = _ceil(decision[2])  # reset_after
        headers += (
            limit,
            (remaining, b"%d" % decision[1]),
            (reset, _reset_texts.get(seconds) or _new_reset_text(seconds)),
        )


class Admission:
    """What a request took from the limits; :meth:`end` gives back what it did not use."""

    __slots__ = ("_plan", "_stage", "reserved")

    def __init__(self, stage: LimitStage, plan: Plan | None, reserved: int) -> None:
        self._stage = stage
        self._plan = plan  # None: nothing was taken (the limiter was down, failing open)
        self.reserved = reserved

    def relayed(self, status: int, state: dict[str, Any]) -> None:
        """:meth:`end` for a relayed answer of ``status``, with the tokens it reported
        (``state``'s ``prompt_tokens`` and ``generated_tokens``); the relay's end calls it."""
        prompt, generated = state.get("prompt_tokens"), state.get("generated_tokens")
        if prompt is not None or generated is not None:
            self.end((prompt or 0) + (generated or 0))
        else:
            # An error answer generated nothing; a cut-off one may have: keep it all.
            self.end(0 if status >= 400 else None)

    def end(self, used_tokens: int | None) -> None:
        """Settle: token budgets keep ``used_tokens`` (0 for a cached answer or a failure
        before any backend answered; ``None`` keeps the whole reservation), concurrency slots
        are given back. Once only; never raises."""
        plan = self._plan
        if plan is None:
            return
        self._plan = None
        unused = 0 if used_tokens is None else self.reserved - used_tokens
        inline = self._stage.inline
        if inline is not None:
            if plan.held:
                inline.settle(plan.held, 1)
            if unused:
                inline.settle(plan.reserved, unused)
            return
        refunds = [(key, rate, 1) for key, rate in plan.held]
        if unused:
            refunds += [(key, rate, unused) for key, rate in plan.reserved]
        if refunds:
            self._stage.spawn(self._stage.give_back(refunds))


class LimitStage:
    """Runs the checks of :class:`LimitPolicy` against one :class:`Limiter`."""

    def __init__(self, limiter: Limiter, settings: LimitSettings, metrics: Metrics) -> None:
        self.limiter = limiter
        self.metrics = metrics
        # Told of every denial (the webhooks' limit.exceeded event): name of the limit, details.
        self.on_denied: Callable[[str, dict[str, Any]], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_at = -math.inf
        # Per-key use of limits, for metrics: which keys, the last copy read from a shared
        # limiter, and the task refreshing it.
        self._keyring: KeyRing | None = None
        self._declared: Callable[[], Iterable[KeyEntry]] = tuple
        self._key_use: list[LimitUse] = []
        self._refresher: asyncio.Task[None] | None = None
        self._closed = False
        self.use_interval = _USE_EVERY
        self.configure(settings)
        metrics.count_key_limits(self.key_limit_use)

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    @limiter.setter
    def limiter(self, limiter: Limiter) -> None:
        self._limiter = limiter
        # In-process counts need no await: checked and settled inline, with no task per request.
        self.inline = limiter if isinstance(limiter, MemoryLimiter) else None

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
        if self.inline is not None:
            return self.admit_now(call, request, headers)
        plan, call, reserve = self._plan(call, request)
        hits: list[Hit] = [(key, rate, reserve if tok else 1) for key, rate, tok in plan.parts]
        try:
            decisions = await self._limiter.hit_many(hits)
        except LimiterUnavailable as err:
            self._store_failed(err)
            return call, Admission(self, None, reserve)  # open: let through, nothing counted
        return call, self._admitted(call, request, headers, plan, reserve, decisions)

    def admit_now(
        self, call: Call, request: Request, headers: HeaderList
    ) -> tuple[Call, Admission]:
        """:meth:`admit` without suspending, for the limiter in memory (``inline``): the hot
        path of every limited request."""
        inline = self.inline
        assert inline is not None
        plan, call, reserve = self._plan(call, request)
        decisions = inline.take(plan.parts, reserve, plan.fixed)
        return call, self._admitted(call, request, headers, plan, reserve, decisions)

    def _plan(self, call: Call, request: Request) -> tuple[Plan, Call, int]:
        """The checks on ``call``, the call (with a length limit set when it named none and
        tokens are counted), the tokens it reserves."""
        state = request.state
        plan = self.policy.plan(state["client_ip"], state.get("principal"), call.model_key)
        if not plan.any_tokens:
            return plan, call, 0
        asked = call
        call, reserve = reservation(call, self.policy.max_tokens)
        if call is not asked:
            request.body = call.body  # a length limit was set
        return plan, call, reserve

    def _admitted(
        self,
        call: Call,
        request: Request,
        headers: HeaderList,
        plan: Plan,
        reserve: int,
        decisions: Sequence[Verdict],
    ) -> Admission:
        """The admission the ``decisions`` (in :class:`Decision`'s order) on ``plan`` make,
        with their headers; or 429."""
        if decisions and not decisions[-1][0]:  # not allowed: the last one decided denies
            self._deny(call, request, headers, plan, reserve, decisions)
        _limit_headers(headers, plan.shown, plan.checks, decisions)
        return Admission(self, plan, reserve)

    def _deny(
        self,
        call: Call,
        request: Request,
        headers: HeaderList,
        plan: Plan,
        reserve: int,
        decisions: Sequence[Verdict],
    ) -> NoReturn:
        """Count and announce a denial by the last of ``decisions`` on ``plan``, then answer
        429 (nothing was taken)."""
        index = len(decisions) - 1
        check = plan.checks[index]
        cost = reserve if plan.parts[index][2] else 1
        self.metrics.limited(check.label)
        state = request.state
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
        names = HEADER_NAMES.get(check.counts)
        if names is not None:  # the denying limit's headers
            shown = Shown(index, (index,), (names[0], check.limit_text), names[1], names[2])
            _limit_headers(headers, (shown,), plan.checks, decisions)
        decision = decisions[index]
        if cost > check.rate.limit:
            message = f"request needs about {cost} tokens, more than {check.name}"
        else:
            message = f"rate limit exceeded: {check.name}"
        raise RateLimited(message, retry_after=decision[3])

    async def key_usage(self, principal: Principal) -> list[dict[str, object]]:
        """Current use of the limits counted per key (requests per window, tokens, in flight),
        for the admin API and ``corral keys show``; smooth rates have no count to show."""
        checks = self.policy.key_checks(principal)
        used = await self._limiter.usage_many([check.key for check in checks])
        return [
            {"limit": check.name, "name": check.label, "max": check.rate.limit, "used": int(n)}
            for check, n in zip(checks, used, strict=True)
        ]

    def report_keys(
        self, keyring: KeyRing, declared: Callable[[], Iterable[KeyEntry]] = tuple
    ) -> None:
        """Report the use of per-key limits of the usable keys in ``keyring``, and of the keys
        ``declared`` in settings (read at each scrape: a reload changes them), as metrics."""
        self._keyring = keyring
        self._declared = declared

    def key_limit_use(self) -> list[LimitUse]:
        """Each reported key's use of each of its limits: (key label, limit label, used, max).

        Called at scrape time, so it never awaits: memory is read live; for Redis, the copy the
        background refresh keeps is returned, and the refresh starts with the first scrape."""
        if self._keyring is None:
            return []
        inline = self.inline
        if inline is not None:
            rows = self._key_rows()
            return [(label, c.label, inline.usage_now(c.key), c.rate.limit) for label, c in rows]
        if (self._refresher is None or self._refresher.done()) and not self._closed:
            loop = asyncio.get_running_loop()
            self._refresher = loop.create_task(self._refresh_use(), name="limit-use")
        return self._key_use

    def _key_rows(self) -> list[tuple[str, Check]]:
        """(key label, check) for every per-key limit of every usable key; never secrets, and
        never client addresses: only keys are reported."""
        if self._keyring is None:
            return []
        now = time.time()
        return [
            (entry.principal.label, check)
            for entry in [*self._keyring.entries.values(), *self._declared()]
            if _usable(entry, now)
            for check in self.policy.key_checks(entry.principal)
        ]

    async def _refresh_use(self) -> None:
        """Read the reported keys' counts from the limiter every ``use_interval`` seconds, in
        one round trip each time; on failure, keep the last copy and try again later."""
        while True:
            rows = self._key_rows()
            try:
                used = await self._limiter.usage_many([check.key for _, check in rows])
            except LimiterUnavailable as err:
                log.debug("per-key limit use not refreshed: %s", err)
            else:
                self._key_use = [
                    (label, check.label, n, check.rate.limit)
                    for (label, check), n in zip(rows, used, strict=True)
                ]
            await asyncio.sleep(self.use_interval)

    def _store_failed(self, err: LimiterUnavailable) -> None:
        """Count and (now and then) log a limiter failure; raise 503 when failing closed."""
        self.metrics.limiter_error()
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            action = "letting requests through" if self.fail_open else "refusing requests"
            log.warning("limits cannot be checked (%s): %s", err, action)
        if not self.fail_open:
            raise Unavailable("rate limits cannot be checked right now", retry_after=1.0)

    async def give_back(self, refunds: list[Hit]) -> None:
        """Every refund of one request in one step (one round trip in Redis)."""
        try:
            await self._limiter.refund_many(refunds)
        except LimiterUnavailable as err:
            self.metrics.limiter_error()
            log.warning("a limit could not be settled: %s", err)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the settlements under way."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def aclose(self) -> None:
        self._closed = True
        await cancel(self._refresher)
        self._refresher = None
        await self.drain()
        await self._limiter.aclose()
