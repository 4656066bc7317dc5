"""When a simulated generation emits each token, and the durations its final chunk reports.

Everything here is arithmetic on explicit event-loop times, so tests check it without sleeping.
The model is ready at ``ready`` (later than the request when it had to load), evaluates the
prompt for ``first_token_delay``, then emits one token every ``1 / tokens_per_second``; the final
chunk comes one interval after the last token. The reported durations are these nominal ones, so
``eval_count / eval_duration * 1e9`` is exactly the configured rate.

Example::

    schedule = Schedule.plan(received=0.0, ready_at=0.5, first_token_delay=0.02,
                             tokens_per_second=100.0)
    schedule.due(0)                 # 0.52: first token
    schedule.due(3)                 # 0.55: fourth token
    schedule.timings(10).eval_duration   # 100_000_000 ns
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral.testing.timestamps import to_ns


@dataclass(frozen=True, slots=True)
class Timings:
    """The nanosecond durations Ollama puts in a final chunk."""

    total_duration: int
    load_duration: int
    prompt_eval_duration: int
    eval_duration: int

    def fields(self, prompt_eval_count: int, eval_count: int) -> dict[str, Any]:
        """The statistics of a final chunk, in Ollama's key order."""
        return {
            "total_duration": self.total_duration,
            "load_duration": self.load_duration,
            "prompt_eval_count": prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration,
            "eval_count": eval_count,
            "eval_duration": self.eval_duration,
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    """Event-loop times of one generation."""

    received: float
    ready: float
    first: float
    interval: float

    @classmethod
    def plan(
        cls,
        received: float,
        ready_at: float,
        first_token_delay: float,
        tokens_per_second: float,
    ) -> Schedule:
        ready = max(received, ready_at)
        interval = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0
        return cls(received, ready, ready + max(0.0, first_token_delay), interval)

    def due(self, tokens_before: int) -> float:
        """When the token after ``tokens_before`` others is emitted."""
        return self.first + tokens_before * self.interval

    def done(self, eval_count: int) -> float:
        """When the final chunk is emitted."""
        return self.first + eval_count * self.interval

    def timings(self, eval_count: int) -> Timings:
        eval_ns = to_ns(eval_count * self.interval)
        if eval_count and not eval_ns:
            eval_ns = eval_count  # an unpaced run still took some time; never report 0
        load = to_ns(self.ready - self.received)
        prompt = to_ns(self.first - self.ready)
        return Timings(load + prompt + eval_ns, load, prompt, eval_ns)
