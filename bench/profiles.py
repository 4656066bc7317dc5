"""How big and how long each scenario runs: the full benchmark, ``--quick`` and ``--smoke``.

The streaming rates are chosen so that the load generator, which shares its core with the
simulator, keeps up: 500 streams at 20 tokens/s is 10,000 chunks/s into one Python client, which
takes it a fraction of its core. A client that falls behind would measure itself, not corral.
"""

from __future__ import annotations

from dataclasses import dataclass

# A rate no timer can honour: the simulator then emits tokens back to back, never sleeping.
UNPACED = 1e9


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    rounds: int
    """Rounds per scenario, each measuring direct, corral (and (a)'s variants) once; each figure
    is the median over them."""
    pin: bool
    reference: bool
    """Whether (a), (b) and (c) measure nginx too, in the same rounds (``bench/reference.py``)."""
    # (a) non-streaming requests per second
    a_connections: int
    a_duration: float
    a_num_predict: int
    a_variants: tuple[str, ...]
    """Other corrals measured in (a)'s rounds beside the default one (``bench/variants.py``)."""
    # (b) many concurrent streams
    b_streams: int
    b_tokens: int
    b_tokens_per_second: float
    b_ramp: float
    """Seconds over which the streams start; shorter than one stream, so all run at once."""
    # (c) chunk throughput with corral as the bottleneck
    c_connections: int
    c_tokens: int
    c_warmup: float
    c_duration: float
    # (d) memory with many open streams
    d_streams: int
    d_tokens_per_second: float
    d_hold: float
    # (i) instructions per request in each mode (bench/instructions.py)
    i_requests: int
    """Requests counted per mode; 0 leaves (i) out unless asked for by name."""

    @property
    def b_stream_seconds(self) -> float:
        return (self.b_tokens + 1) / self.b_tokens_per_second


FULL = Profile(
    name="full", rounds=3, pin=True, reference=True,
    a_connections=64, a_duration=5.0, a_num_predict=16,
    a_variants=("limits-memory", "limits-redis", "recording-off", "default-again"),
    b_streams=500, b_tokens=100, b_tokens_per_second=20.0, b_ramp=1.0,
    c_connections=64, c_tokens=200, c_warmup=0.5, c_duration=3.0,
    d_streams=500, d_tokens_per_second=1.0, d_hold=3.0,
    i_requests=3000,
)  # fmt: skip

QUICK = Profile(
    name="quick", rounds=1, pin=True, reference=True,
    a_connections=64, a_duration=3.0, a_num_predict=16,
    a_variants=("limits-memory", "limits-redis", "recording-off"),
    b_streams=500, b_tokens=100, b_tokens_per_second=20.0, b_ramp=1.0,
    c_connections=64, c_tokens=200, c_warmup=0.5, c_duration=2.0,
    d_streams=500, d_tokens_per_second=1.0, d_hold=1.5,
    i_requests=1000,
)  # fmt: skip

SMOKE = Profile(
    name="smoke", rounds=1, pin=False, reference=False,
    a_connections=8, a_duration=1.0, a_num_predict=4,
    # Not Redis: the smoke run checks the machinery on any machine, Redis or not.
    a_variants=("limits-memory", "recording-off"),
    b_streams=10, b_tokens=10, b_tokens_per_second=100.0, b_ramp=0.05,
    c_connections=4, c_tokens=50, c_warmup=0.2, c_duration=0.5,
    d_streams=10, d_tokens_per_second=5.0, d_hold=0.3,
    # (i) runs corral under valgrind, slow to start: only when asked for by name.
    i_requests=0,
)  # fmt: skip

PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}
