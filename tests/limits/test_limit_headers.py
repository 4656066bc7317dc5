"""The ``X-RateLimit-*`` headers when several limits of a kind apply: the one with the fewest
units left speaks for all of them, with its own size and reset."""

from __future__ import annotations

import orjson

from corral.context import Call
from corral.http.limit_stage import LimitStage
from corral.http.messages import HeaderList, Headers, Request
from corral.limits.memory import MemoryLimiter
from corral.observability.metrics import Metrics
from corral.settings import LimitSettings, ScopeLimits
from tests.limits.conftest import FakeClock

BODY = {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 5}}


def _admit(stage: LimitStage, client_ip: str) -> dict[bytes, bytes]:
    body = orjson.dumps(BODY)
    call = Call("ollama", "/api/generate", "llama3.2", False, body, dict(BODY), "llama3.2:latest")
    request = Request("POST", "/api/generate", "", Headers([]), body, (client_ip, 1))
    request.state["client_ip"] = client_ip
    headers: HeaderList = []
    _, admission = stage.admit_now(call, request, headers)
    admission.end(10)
    return dict(headers)


def test_the_limit_with_fewest_units_left_names_the_headers() -> None:
    clock = FakeClock()
    settings = LimitSettings(
        overall=ScopeLimits(requests=5, window=60.0), ip=ScopeLimits(requests=3, window=30.0)
    )
    stage = LimitStage(MemoryLimiter(clock), settings, Metrics())
    # The address's own limit is the tighter one at first.
    first = _admit(stage, "10.0.0.1")
    assert first[b"X-RateLimit-Limit"] == b"3"
    assert first[b"X-RateLimit-Remaining"] == b"2"
    assert first[b"X-RateLimit-Reset"] == b"30"
    # Others use up the overall limit: now it has fewer left than this address's.
    clock.now += 5
    _admit(stage, "10.0.0.2")
    _admit(stage, "10.0.0.3")
    _admit(stage, "10.0.0.4")
    later = _admit(stage, "10.0.0.1")
    assert later[b"X-RateLimit-Limit"] == b"5"
    assert later[b"X-RateLimit-Remaining"] == b"0"  # the address's own still has 1
    assert later[b"X-RateLimit-Reset"] == b"55"
