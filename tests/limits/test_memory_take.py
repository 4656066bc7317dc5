"""``MemoryLimiter.take``, the limits stage's one-pass path, decides and counts exactly as
``hit_many_now``, the all-or-nothing batch every limiter implements, on any sequence of
requests: same decisions, same counts left behind, denials included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.limits.memory import MemoryLimiter
from corral.limits.rate import Rate
from tests.limits.conftest import FakeClock

# The kinds of check a request meets: a request limit, token budgets, a concurrency slot
# (small limits, so that denials come often), and whether each costs the request's tokens.
CHECKS = [
    ("ip:r", Rate(4, 60.0), False),
    ("key:r", Rate(6, 10.0), False),
    ("ip:tm", Rate(300, 60.0), True),
    ("key:td", Rate(900, 86400.0), True),
    ("key:c", Rate(2, 3600.0, "concurrent"), False),
    ("all:s", Rate(3, 1.0, "smooth"), False),  # not simple: taken by the batch path
]

steps = st.lists(
    st.tuples(
        st.lists(st.sampled_from(range(len(CHECKS))), min_size=1, max_size=4, unique=True),
        st.integers(min_value=1, max_value=350),  # the tokens a request reserves
        st.sampled_from([0.0, 0.0, 1.0, 7.5, 61.0, 3601.0]),  # time before it
        st.booleans(),  # whether a request let through gives its units back at once
    ),
    max_size=40,
)


def _state(limiter: MemoryLimiter, now: float) -> dict[str, list[float]]:
    """The counts in force (an expired one is as good as none, whichever is kept)."""
    return {key: list(entry) for key, entry in limiter._state.items() if entry[1] > now}


@settings(max_examples=300, deadline=None)
@given(steps)
def test_take_agrees_with_the_batch_it_stands_for(
    requests: list[tuple[list[int], int, float, bool]],
) -> None:
    clock = FakeClock()
    fast, reference = MemoryLimiter(clock), MemoryLimiter(clock)
    for chosen, reserve, wait, give_back in requests:
        clock.now += wait
        parts = tuple(CHECKS[index] for index in chosen)
        simple = all(rate.kind != "smooth" for _, rate, _ in parts)
        taken = fast.take(parts, reserve, simple)
        hits = [(key, rate, reserve if tokens else 1) for key, rate, tokens in parts]
        expected = reference.hit_many_now(hits)
        assert taken == expected
        assert _state(fast, clock.now) == _state(reference, clock.now)
        if give_back and taken[-1].allowed:
            for limiter in (fast, reference):
                for key, rate, cost in hits:
                    limiter.refund_now(key, rate, cost)


def test_a_denial_gives_back_what_the_pass_took_before_it() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    requests, tokens, held = Rate(5, 60.0), Rate(100, 60.0), Rate(3, 3600.0, "concurrent")
    assert limiter.take((("c", held, False),), 0, True)[0].allowed
    clock.now += 10
    assert limiter.take((("t", tokens, True),), 90, True)[0].allowed
    before = _state(limiter, clock.now)
    decisions = limiter.take(
        (("r", requests, False), ("c", held, False), ("t", tokens, True)), 20, True
    )
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[-1].remaining == 10
    # The fresh request count is gone; the concurrency count has its units and expiry back.
    assert _state(limiter, clock.now) == before
