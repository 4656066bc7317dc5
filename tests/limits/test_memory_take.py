"""``MemoryLimiter.take``, the limits stage's one-pass path, decides and counts exactly as
``hit_many_now``, the all-or-nothing batch every limiter implements, on any sequence of
requests: same decisions, same counts left behind, denials included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.limits.memory import SWEEP_EVERY, MemoryLimiter, fixed_parts
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
        # The tokens it will have used when it ends (more or less than it reserved), or None
        # for a request that never ends here.
        st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
        st.booleans(),  # whether the oldest request still going on ends first
    ),
    max_size=40,
)


def _state(limiter: MemoryLimiter, now: float) -> dict[str, list[float]]:
    """The counts in force (an expired one is as good as none, whichever is kept)."""
    return {key: list(entry) for key, entry in limiter._state.items() if entry[1] > now}


Request = tuple[tuple[tuple[str, Rate, bool], ...], int, int]


def _end(request: Request, fast: MemoryLimiter, reference: MemoryLimiter) -> None:
    """Settle as the limits stage does: the concurrency slot back, the token budgets kept at
    what was used (reserved minus used back, or more taken when used is more), with
    ``settle`` on the one and ``refund_now``, the contract's refund, on the other."""
    parts, reserve, used = request
    for key, rate, tokens in parts:
        if rate.kind == "concurrent" or tokens:
            units = reserve - used if tokens else 1
            reference.refund_now(key, rate, units)
            fast.settle([(key, rate)], units)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_take_agrees_with_the_batch_it_stands_for(
    requests: list[tuple[list[int], int, float, int | None, bool]],
) -> None:
    clock = FakeClock()
    fast, reference = MemoryLimiter(clock), MemoryLimiter(clock)
    going_on: list[Request] = []
    for chosen, reserve, wait, used, end_oldest in requests:
        clock.now += wait
        if end_oldest and going_on:
            _end(going_on.pop(0), fast, reference)
            assert _state(fast, clock.now) == _state(reference, clock.now)
        parts = tuple(CHECKS[index] for index in chosen)
        taken = fast.take(parts, reserve, fixed_parts(parts))
        hits = [(key, rate, reserve if tokens else 1) for key, rate, tokens in parts]
        expected = reference.hit_many_now(hits)
        assert taken == expected
        assert _state(fast, clock.now) == _state(reference, clock.now)
        if used is not None and taken[-1][0]:
            going_on.append((parts, reserve, used))


def test_a_denial_gives_back_what_the_pass_took_before_it() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    requests, tokens, held = Rate(5, 60.0), Rate(100, 60.0), Rate(3, 3600.0, "concurrent")
    concurrency = (("c", held, False),)
    assert limiter.take(concurrency, 0, fixed_parts(concurrency))[0][0]
    clock.now += 10
    budget = (("t", tokens, True),)
    assert limiter.take(budget, 90, fixed_parts(budget))[0][0]
    before = _state(limiter, clock.now)
    parts = (("r", requests, False), ("c", held, False), ("t", tokens, True))
    decisions = limiter.take(parts, 20, fixed_parts(parts))
    assert [d[0] for d in decisions] == [True, True, False]
    assert decisions[-1][1] == 10
    # The fresh request count is gone; the concurrency count has its units and expiry back.
    assert _state(limiter, clock.now) == before


def test_counts_whose_window_ended_are_swept_within_a_second() -> None:
    """Memory stays bounded by the keys seen in about one window, whichever path counts."""
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    minute = Rate(10, 60.0)
    for n in range(100):
        parts = ((f"ip:{n}", minute, False),)
        limiter.take(parts, 0, fixed_parts(parts))
    limiter.hit_now("key:a", Rate(10, 5.0))
    assert len(limiter._state) == 101
    clock.now += 30.0  # key:a's window is over, the others' are not
    limiter.hit_now("key:b", minute)
    assert "key:a" not in limiter._state and len(limiter._state) == 101
    clock.now += 31.0 + SWEEP_EVERY
    limiter.hit_many_now([("key:c", minute, 1)])
    assert set(limiter._state) == {"key:b", "key:c"}
    # A minute on, the take that starts ip:0's new window sweeps the two that ended.
    clock.now += 60.0
    parts = (("ip:0", minute, False),)
    limiter.take(parts, 0, fixed_parts(parts))
    assert set(limiter._state) == {"ip:0"}
