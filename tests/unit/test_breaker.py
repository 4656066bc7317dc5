"""The circuit breaker, driven by a fake clock."""

from __future__ import annotations

from corral.backends.backend import Backend, BackendSpec
from corral.backends.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.record_failure() is True
    assert breaker.state == "open"
    assert not breaker.allows()


def test_half_open_lets_one_trial_through_after_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allows()
    assert breaker.retry_in > 0
    clock.now += 0.2
    assert breaker.allows()
    assert breaker.state == "half_open"
    breaker.on_attempt()
    assert not breaker.allows()  # only one trial at a time


def test_trial_success_closes_and_trial_failure_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=5, clock=clock)
    breaker.record_failure()
    clock.now += 6
    assert breaker.allows()
    breaker.on_attempt()
    assert breaker.record_failure() is True
    assert breaker.state == "open"
    assert not breaker.allows()
    clock.now += 6
    assert breaker.allows()
    breaker.on_attempt()
    assert breaker.record_success() is True
    assert breaker.state == "closed"
    assert breaker.allows()


def test_backend_with_open_circuit_is_not_usable_and_says_so() -> None:
    clock = Clock()
    backend = Backend(
        BackendSpec("b", "127.0.0.1", 1),
        breaker=CircuitBreaker(failure_threshold=2, cooldown=5, clock=clock),
    )
    events: list[str] = []
    backend.on_state_change = lambda b, event: events.append(event)
    backend.record_failure("timeout")
    assert backend.usable
    backend.record_failure("timeout")
    assert not backend.usable
    assert backend.status == "open"
    clock.now += 5
    assert backend.usable
    backend.record_success(0.1)
    assert backend.status != "open"
    assert events == ["down", "up"]  # each change reported once
