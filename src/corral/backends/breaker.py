"""A circuit breaker per backend, fed by what real traffic sees.

::

    closed ──(failure_threshold failures in a row)──▶ open
    open ──(cooldown elapsed)──▶ half-open: one trial request is let through
    half-open ──success──▶ closed        half-open ──failure──▶ open (cooldown again)

A failure is a refused connection, a timeout, a 5xx, or a stream that broke after it started.
Time comes from an injected clock, so the unit tests drive it without sleeping.

>>> now = [0.0]
>>> breaker = CircuitBreaker(failure_threshold=2, cooldown=30.0, clock=lambda: now[0])
>>> breaker.record_failure(), breaker.record_failure(), breaker.state
(False, True, 'open')
>>> breaker.allows()
False
>>> now[0] = 31.0
>>> breaker.allows(), breaker.state
(True, 'half_open')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self.state: BreakerState = "closed"
        self.failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    def allows(self) -> bool:
        """May a request go to this backend now? In half-open state, only one at a time."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self._clock() - self._opened_at < self.cooldown:
                return False
            self.state = "half_open"
            self._trial_in_flight = False
        return not self._trial_in_flight

    def on_attempt(self) -> None:
        if self.state == "half_open":
            self._trial_in_flight = True

    def record_success(self) -> bool:
        """Returns True when this success closed an open circuit."""
        self.failures = 0
        changed = self.state != "closed"
        self.state = "closed"
        self._trial_in_flight = False
        return changed

    def record_failure(self) -> bool:
        """Returns True when this failure opened the circuit."""
        self.failures += 1
        if self.state == "half_open" or (
            self.state == "closed" and self.failures >= self.failure_threshold
        ):
            self.state = "open"
            self._opened_at = self._clock()
            self._trial_in_flight = False
            return True
        return False

    @property
    def retry_in(self) -> float:
        if self.state != "open":
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))
