"""What a relayed answer's end keeps of a request's token reservation (``Admission.relayed``):
the tokens the answer reported; none for an error answer; all of it for an answer cut off before
it reported any."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.context import Call
from corral.http.limit_stage import LimitStage
from corral.http.messages import HeaderList, Headers, Request
from corral.limits.memory import MemoryLimiter
from corral.observability.metrics import Metrics
from corral.settings import LimitSettings, ScopeLimits
from tests.limits.conftest import FakeClock

BODY = {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 50}}
BUDGET = "ip:10.0.0.1:tm100000/60"


@pytest.mark.parametrize(
    ("status", "reported", "kept"),
    [
        (200, {"prompt_tokens": 7, "generated_tokens": 20}, 27),
        (200, {"generated_tokens": 20}, 20),
        (500, {}, 0),
        (200, {}, None),  # cut off before its counts: the whole reservation stays
    ],
)
def test_a_relayed_answer_settles_its_reservation(
    status: int, reported: dict[str, Any], kept: int | None
) -> None:
    limiter = MemoryLimiter(FakeClock())
    stage = LimitStage(limiter, LimitSettings(ip=ScopeLimits(tokens_per_minute=100_000)), Metrics())
    body = orjson.dumps(BODY)
    call = Call("ollama", "/api/generate", "llama3.2", False, body, dict(BODY), "llama3.2:latest")
    request = Request("POST", "/api/generate", "", Headers([]), body, ("10.0.0.1", 1))
    request.state["client_ip"] = "10.0.0.1"
    headers: HeaderList = []
    _, admission = stage.admit_now(call, request, headers)
    reserved = admission.reserved
    assert reserved > 50 and limiter.usage_now(BUDGET) == reserved
    admission.relayed(status, reported)
    assert limiter.usage_now(BUDGET) == (reserved if kept is None else kept)
    admission.relayed(status, {"generated_tokens": 1})  # once only
    assert limiter.usage_now(BUDGET) == (reserved if kept is None else kept)
