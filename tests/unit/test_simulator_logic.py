"""The simulator's rules, without a socket and without waiting for time."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from typing import Any

import orjson
import pytest

from corral.http.messages import Headers, Request, Response, StreamResponse
from corral.testing import ConnectionDrop, Outcome, Simulator
from corral.testing.embeddings import embedding, to_base64
from corral.testing.faults import NO_STREAM_FAULTS, Faults, StreamFaults
from corral.testing.generation import Prompt, json_document, logprob, plan, think_tokens
from corral.testing.models import ModelCatalogue, canonical_name, model_digest, profile_for
from corral.testing.ndjson import ChatEncoder, GenerateEncoder
from corral.testing.payload import BadRequest
from corral.testing.residency import FOREVER, LoadedModels, parse_keep_alive
from corral.testing.runner import Generation, complete, stream
from corral.testing.state import SimState
from corral.testing.stats import SimStats
from corral.testing.timestamps import WallClock, rfc3339_at
from corral.testing.timing import Schedule

UNPACED: dict[str, Any] = {"tokens_per_second": 1e9, "first_token_delay": 0.0}


def _prompt(text: str = "Why is the sky blue?", **kw: Any) -> Prompt:
    return Prompt(text, len(text.split()), text, **kw)


def _request(path: str, body: object = None, method: str = "POST") -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else b""
    return Request(method, path, "", Headers([]), raw, ("127.0.0.1", 1))


async def _collect(response: Response) -> list[bytes]:
    assert isinstance(response, StreamResponse)
    return [chunk async for chunk in response.chunks]


# ---- generation -----------------------------------------------------------------------------


def test_same_prompt_gives_same_text_and_another_prompt_another() -> None:
    first = plan("llama3.2:latest", _prompt(), natural=24)
    again = plan("llama3.2:latest", _prompt(), natural=24)
    other = plan("llama3.2:latest", _prompt("Tell me about llamas"), natural=24)
    assert first.text == again.text
    assert first.text != other.text
    assert first.text[0].isupper() and first.text.endswith(".")


def test_seed_changes_the_text_deterministically() -> None:
    a = plan("m", _prompt(seed=1), 24)
    b = plan("m", _prompt(seed=2), 24)
    assert a.text != b.text
    assert plan("m", _prompt(seed=1), 24).text == a.text


def test_without_a_limit_the_answer_has_natural_length_and_stops() -> None:
    answer = plan("m", _prompt(), natural=24)
    assert (answer.eval_count, answer.done_reason) == (24, "stop")
    assert answer.prompt_eval_count == 5


def test_num_predict_only_caps_the_answer_as_in_ollama() -> None:
    roomy = plan("m", _prompt(limit=100), natural=24)
    shorter = plan("m", _prompt(limit=3), natural=24)
    assert (roomy.eval_count, roomy.done_reason) == (24, "stop")
    assert (shorter.eval_count, shorter.done_reason) == (3, "length")
    # Cut short, the same answer: its first three tokens.
    assert plan("m", _prompt(), natural=24).text.startswith(shorter.text)


def test_with_exact_limits_num_predict_sets_the_length() -> None:
    longer = plan("m", _prompt(limit=100), natural=24, exact_limits=True)
    shorter = plan("m", _prompt(limit=3), natural=24, exact_limits=True)
    unlimited = plan("m", _prompt(), natural=24, exact_limits=True)
    assert (longer.eval_count, longer.done_reason) == (100, "length")
    assert (shorter.eval_count, shorter.done_reason) == (3, "length")
    assert (unlimited.eval_count, unlimited.done_reason) == (24, "stop")


def test_a_cap_only_shortens() -> None:
    assert plan("m", _prompt(cap=1024), 24).done_reason == "stop"
    capped = plan("m", _prompt(cap=5), 24)
    assert (capped.eval_count, capped.done_reason) == (5, "length")


def test_empty_prompt_counts_at_least_one_token() -> None:
    assert plan("m", Prompt("", 0), 4).prompt_eval_count == 1


def test_json_format_gives_a_json_object() -> None:
    answer = plan("m", _prompt(format="json"), 24)
    assert isinstance(orjson.loads(answer.text), dict)
    assert answer.done_reason == "stop"


def test_schema_format_fills_every_property_with_its_type() -> None:
    schema = {
        "type": "object",
        "properties": {
            "age": {"type": "integer"},
            "available": {"type": "boolean"},
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mood": {"enum": ["happy", "sad"]},
        },
        "required": ["age", "available"],
    }
    doc = orjson.loads(json_document(schema, seed=7))
    assert isinstance(doc["age"], int) and isinstance(doc["available"], bool)
    assert isinstance(doc["name"], str) and isinstance(doc["tags"], list)
    assert doc["mood"] in ("happy", "sad")


def test_thinking_comes_before_content_and_counts_as_tokens() -> None:
    answer = plan("m", _prompt(think=True), 24)
    assert len(answer.thinking) == think_tokens(True) > 0
    assert answer.eval_count == len(answer.thinking) + 24
    assert plan("m", _prompt(think="high"), 24).thinking
    assert not plan("m", _prompt(think=False), 24).thinking


def test_a_limit_covers_thinking_too() -> None:
    answer = plan("m", _prompt(think=True, limit=20), 24)
    assert answer.eval_count == 20


@pytest.mark.parametrize("think", ["loud", 3])
def test_unknown_think_value_is_rejected(think: object) -> None:
    with pytest.raises(BadRequest, match="invalid think value"):
        think_tokens(think)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
        },
    },
}


def test_a_tool_named_by_the_user_is_called_with_arguments() -> None:
    text = "please get_weather for tokyo?"
    answer = plan("m", Prompt(text, 4, text, tools=[WEATHER_TOOL]), 24)
    assert [c.name for c in answer.tool_calls] == ["get_weather"]
    assert answer.tool_calls[0].arguments["city"] == "Tokyo"
    assert answer.tool_calls[0].arguments["unit"] in ("celsius", "fahrenheit")
    assert answer.content == [] and answer.eval_count > 0


def test_a_tool_not_mentioned_is_not_called() -> None:
    answer = plan("m", _prompt(tools=[WEATHER_TOOL]), 24)
    assert not answer.tool_calls and answer.text


def test_logprobs_are_deterministic_with_alternatives() -> None:
    entry = logprob(" sky", 3)
    assert entry == logprob(" sky", 3)
    assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 3


# ---- timing ---------------------------------------------------------------------------------


def test_schedule_paces_tokens_after_load_and_first_token_delay() -> None:
    s = Schedule.plan(received=10.0, ready_at=10.5, first_token_delay=0.02, tokens_per_second=100)
    assert s.due(0) == pytest.approx(10.52)
    assert s.due(3) == pytest.approx(10.55)
    assert s.done(10) == pytest.approx(10.62)
    t = s.timings(10)
    assert t.load_duration == 500_000_000
    assert t.prompt_eval_duration == 20_000_000
    assert t.eval_duration == 100_000_000
    assert t.total_duration == t.load_duration + t.prompt_eval_duration + t.eval_duration


def test_reported_rate_is_the_configured_rate() -> None:
    t = Schedule.plan(0.0, 0.0, 0.0, 250.0).timings(50)
    assert 50 / t.eval_duration * 1e9 == pytest.approx(250.0)


def test_warm_model_reports_no_load_and_unpaced_run_never_reports_zero_eval() -> None:
    t = Schedule.plan(5.0, ready_at=1.0, first_token_delay=0.0, tokens_per_second=math.inf)
    assert t.timings(4).load_duration == 0
    assert t.timings(4).eval_duration > 0


def test_timestamps_are_rfc3339_with_nanoseconds() -> None:
    clock = WallClock(lambda: 1_700_000_000_123_456_789)
    assert clock.rfc3339() == "2023-11-14T22:13:20.123456789Z"
    assert clock.unix() == 1_700_000_000
    assert rfc3339_at(0.5) == "1970-01-01T00:00:00.500000000Z"


# ---- models and residency -------------------------------------------------------------------


def test_digests_are_stable_hex_per_name() -> None:
    digest = model_digest("llama3.2")
    assert digest == model_digest("llama3.2:latest") and len(digest) == 64
    int(digest, 16)
    assert digest != model_digest("qwen2.5:0.5b")
    assert ModelCatalogue(["llama3.2"]).get("llama3.2:latest").digest == digest  # type: ignore[union-attr]


def test_names_resolve_with_and_without_latest_tag() -> None:
    catalogue = ModelCatalogue(["llama3.2", "qwen2.5:0.5b"])
    assert canonical_name("llama3.2") == "llama3.2:latest"
    assert catalogue.get("llama3.2") is catalogue.get("llama3.2:latest")
    assert catalogue.get("qwen2.5") is None and "qwen2.5:0.5b" in catalogue


def test_profiles_come_from_the_name_and_its_size_tag() -> None:
    assert profile_for("qwen2.5:0.5b").parameters == pytest.approx(0.5e9)
    assert profile_for("nomic-embed-text").capabilities == ("embedding",)
    catalogue = ModelCatalogue(["nomic-embed-text", "llama3.2", "all-minilm"])
    assert catalogue.get("nomic-embed-text").embed_dim == 768  # type: ignore[union-attr]
    assert catalogue.get("llama3.2").embed_dim == 384  # type: ignore[union-attr]
    assert catalogue.get("llama3.2").details()["family"] == "llama"  # type: ignore[union-attr]


def test_repull_changes_digest_only_when_asked() -> None:
    catalogue = ModelCatalogue(["llama3.2"])
    original = catalogue.get("llama3.2").digest  # type: ignore[union-attr]
    assert catalogue.pull("llama3.2", now=1.0, new_digest=False).digest == original
    planned = catalogue.planned_pull("llama3.2", now=2.0, new_digest=True)
    assert catalogue.get("llama3.2").digest == original  # type: ignore[union-attr]
    pulled = catalogue.pull("llama3.2", now=2.0, new_digest=True)
    assert pulled.digest == planned.digest != original
    assert catalogue.pull("llama3.2", now=3.0, new_digest=True).digest not in (
        original,
        pulled.digest,
    )


def test_copy_delete_and_listing_order() -> None:
    catalogue = ModelCatalogue(["llama3.2"])
    clone = catalogue.copy("llama3.2", "backup", now=2e9)
    assert clone is not None and clone.digest == catalogue.get("llama3.2").digest  # type: ignore[union-attr]
    assert catalogue.models()[0].name == "backup:latest"
    assert catalogue.copy("missing", "x", now=0.0) is None
    assert catalogue.delete("backup") is not None and "backup" not in catalogue
    assert catalogue.delete("backup") is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        (0, 0.0),
        ("0", 0.0),
        (30, 30.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        (-1, FOREVER),
        ("-1m", FOREVER),
    ],
)
def test_keep_alive_is_seconds_or_a_go_duration(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


def test_bad_keep_alive_is_rejected() -> None:
    with pytest.raises(BadRequest, match="invalid duration"):
        parse_keep_alive("soon")


def test_model_stays_loaded_for_keep_alive_after_last_use() -> None:
    info = ModelCatalogue(["llama3.2"]).get("llama3.2")
    assert info is not None
    loaded = LoadedModels()
    entry = loaded.acquire(info, now=10.0, keep_alive=None, load_delay=2.0, num_ctx=None)
    assert entry.ready_at == 12.0
    assert loaded.running(now=1000.0) == [entry]  # in use: never expires
    loaded.release(entry, now=15.0)
    assert loaded.running(now=314.9) == [entry] and entry.expires(314.9) == 315.0
    assert loaded.running(now=315.0) == []


def test_warm_model_is_ready_at_once_and_num_ctx_change_reloads() -> None:
    info = ModelCatalogue(["llama3.2"]).get("llama3.2")
    assert info is not None
    loaded = LoadedModels()
    loaded.release(loaded.acquire(info, 0.0, None, 1.0, None), 1.0)
    warm = loaded.acquire(info, 2.0, None, 1.0, None)
    assert warm.ready_at == 0.0 + 1.0 and warm.context_length == 4096
    loaded.release(warm, 2.0)
    reloaded = loaded.acquire(info, 3.0, None, 1.0, 8192)
    assert reloaded.ready_at == 4.0 and reloaded.context_length == 8192


def test_keep_alive_zero_unloads_and_negative_keeps_forever() -> None:
    info = ModelCatalogue(["llama3.2"]).get("llama3.2")
    assert info is not None
    loaded = LoadedModels()
    loaded.release(loaded.acquire(info, 0.0, 0.0, 0.0, None), 1.0)
    assert loaded.running(1.0) == []
    loaded.release(loaded.acquire(info, 0.0, FOREVER, 0.0, None), 1.0)
    assert len(loaded.running(1e12)) == 1
    assert loaded.unload(info.name) and loaded.running(0.0) == []


# ---- embeddings -----------------------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors() -> None:
    v = embedding("Why is the sky blue?", 768)
    assert len(v) == 768 and v == embedding("Why is the sky blue?", 768)
    assert math.fsum(x * x for x in v) == pytest.approx(1.0)
    assert v != embedding("Why is grass green?", 768)


def test_fewer_dimensions_is_the_renormalised_prefix() -> None:
    full, short = embedding("text", 768), embedding("text", 64)
    scale = short[0] / full[0]
    assert short == pytest.approx([x * scale for x in full[:64]])


def test_base64_embedding_is_little_endian_float32() -> None:
    v = embedding("x", 8)
    decoded = struct.unpack("<8f", base64.b64decode(to_base64(v)))
    assert decoded == pytest.approx(v, rel=1e-6)


# ---- faults and stats -----------------------------------------------------------------------


def test_faults_are_off_until_set_and_reset_restores_defaults() -> None:
    faults = Faults()
    assert not faults.active
    faults.update({"busy": True, "drop_after_chunks": 3})
    assert faults.active and faults.for_stream().drop_after_chunks == 3
    faults.reset()
    assert not faults.active and faults.drop_after_chunks is None


@pytest.mark.parametrize(
    "values",
    [{"nope": True}, {"busy": 1}, {"drop_after_chunks": -1}, {"scope": "some"}, {"hang": "y"}],
)
def test_bad_fault_values_are_rejected_whole(values: dict[str, object]) -> None:
    faults = Faults()
    with pytest.raises(BadRequest):
        faults.update({"status_500": True, **values})
    assert not faults.status_500


def test_faults_with_times_switch_off_after_that_many_requests() -> None:
    faults = Faults(busy=True, times=2)
    faults.consume()
    assert faults.busy
    faults.consume()
    assert not faults.busy and faults.times is None


def test_fault_scope_is_model_endpoints_unless_all() -> None:
    faults = Faults()
    assert faults.applies_to("/api/chat") and faults.applies_to("/v1/embeddings")
    assert not faults.applies_to("/api/version")
    faults.scope = "all"
    assert faults.applies_to("/api/version")


async def test_stats_record_each_outcome_once_and_wake_waiters() -> None:
    stats = SimStats()
    record = stats.begin("/api/chat", "m", 1.0, stream=True)
    waiter = asyncio.create_task(stats.wait_cancelled(timeout=1.0))
    await asyncio.sleep(0)
    stats.finish(record, Outcome.CANCELLED, 2.0)
    stats.finish(record, Outcome.COMPLETED, 3.0)
    assert await waiter is record
    assert (record.outcome, record.finished_at, stats.active) == (Outcome.CANCELLED, 2.0, 0)
    assert stats.cancelled_event.is_set()
    stats.reset()
    assert stats.cancelled == 0 and not stats.generations and not stats.cancelled_event.is_set()


async def test_waiting_for_something_that_never_happens_times_out() -> None:
    with pytest.raises(TimeoutError):
        await SimStats().wait_cancelled(timeout=0.01)


# ---- running generations (unpaced: nothing sleeps) ------------------------------------------


def _generation(state: SimState, faults: StreamFaults = NO_STREAM_FAULTS, **kw: Any) -> Generation:
    info = state.catalogue.get("llama3.2")
    assert info is not None
    answer = plan(info.name, _prompt(**kw), state.response_tokens)
    return Generation(state, "/api/chat", "llama3.2", info, answer, stream=True, faults=faults)


def _state() -> SimState:
    return SimState(ModelCatalogue(["llama3.2"]), **UNPACED)


async def test_stream_sends_one_line_per_token_then_a_final_with_stats() -> None:
    state = _state()
    gen = _generation(state, limit=7)
    lines = [orjson.loads(c) async for c in stream(gen, ChatEncoder("llama3.2", state.clock))]
    assert len(lines) == 8 and not any(line["done"] for line in lines[:-1])
    final = lines[-1]
    assert list(final)[:5] == ["model", "created_at", "message", "done_reason", "done"]
    assert (final["done_reason"], final["eval_count"], final["prompt_eval_count"]) == (
        "length",
        7,
        5,
    )
    assert "".join(line["message"]["content"] for line in lines) == gen.plan.text
    assert state.stats.completed == 1 and state.stats.active == 0
    assert state.loaded.get("llama3.2:latest", now=0.0) is not None


async def test_generate_stream_ends_with_context() -> None:
    state = _state()
    info = state.catalogue.get("llama3.2")
    assert info is not None
    answer = plan(info.name, _prompt(), 24)
    gen = Generation(state, "/api/generate", "llama3.2", info, answer, stream=True)
    chunks = [c async for c in stream(gen, GenerateEncoder("llama3.2", state.clock))]
    final = orjson.loads(chunks[-1])
    assert final["done"] is True and final["done_reason"] == "stop"
    assert len(final["context"]) == answer.prompt_eval_count + answer.eval_count


async def test_error_after_chunks_sends_an_error_line_and_ends() -> None:
    state = _state()
    gen = _generation(state, StreamFaults(error_after_chunks=3))
    lines = [orjson.loads(c) async for c in stream(gen, ChatEncoder("llama3.2", state.clock))]
    assert len(lines) == 4
    assert lines[-1] == {"error": "an error was encountered while running the model"}
    assert state.stats.outcomes[Outcome.FAILED] == 1 and state.stats.active == 0


async def test_drop_after_chunks_raises_connection_drop() -> None:
    state = _state()
    gen = _generation(state, StreamFaults(drop_after_chunks=2))
    received = []
    with pytest.raises(ConnectionDrop):
        async for chunk in stream(gen, ChatEncoder("llama3.2", state.clock)):
            received.append(chunk)
    assert len(received) == 2 and state.stats.outcomes[Outcome.DROPPED] == 1


async def test_closing_a_stream_early_records_a_cancellation_and_frees_the_model() -> None:
    state = _state()
    gen = _generation(state)
    chunks = stream(gen, ChatEncoder("llama3.2", state.clock))
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]
    record = await state.stats.wait_cancelled(timeout=1.0)
    assert record.path == "/api/chat" and state.stats.active == 0
    assert state.loaded.get("llama3.2:latest", 0.0).in_use == 0  # type: ignore[union-attr]


async def test_non_streaming_run_returns_timings_or_the_fault() -> None:
    state = _state()
    timings = await complete(_generation(state, limit=5))
    assert timings.eval_duration > 0 and state.stats.completed == 1
    with pytest.raises(ConnectionDrop):
        await complete(_generation(state, StreamFaults(drop_after_chunks=0)))


# ---- request handling in process ------------------------------------------------------------


async def test_unknown_path_and_wrong_method_answer_like_ollama() -> None:
    sim = Simulator()
    missing = await sim.handle(_request("/nope", method="GET"))
    assert (missing.status, missing.body) == (404, b"404 page not found")
    wrong = await sim.handle(_request("/api/chat", method="GET"))
    assert (wrong.status, orjson.loads(wrong.body)) == (405, {"error": "method not allowed"})
    root = await sim.handle(_request("/", method="HEAD"))
    assert (root.status, root.body) == (200, b"Ollama is running")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"prompt": "hi"}, 400, "model is required"),
        ({"model": "ghost", "prompt": "hi"}, 404, 'model "ghost" not found, try pulling it first'),
        (b"{not json", 400, None),
        (b"", 400, "missing request body"),
        ({"model": "llama3.2", "prompt": "hi", "stream": "yes"}, 400, None),
        ({"model": "llama3.2", "prompt": "hi", "format": "xml"}, 400, None),
        ({"model": "nomic-embed-text", "prompt": "hi"}, 400, None),
    ],
)
async def test_bad_generate_requests_get_ollama_errors(
    body: object, status: int, error: str | None
) -> None:
    response = await Simulator(**UNPACED).handle(_request("/api/generate", body))
    payload = orjson.loads(response.body)
    assert response.status == status and isinstance(payload["error"], str)
    if error is not None:
        assert payload["error"] == error


async def test_openai_and_anthropic_errors_have_their_own_shape() -> None:
    sim = Simulator()
    openai = await sim.handle(_request("/v1/chat/completions", {"model": "ghost", "messages": []}))
    assert openai.status == 400
    assert orjson.loads(openai.body)["error"]["type"] == "invalid_request_error"
    missing = await sim.handle(_request("/v1/models/ghost", method="GET"))
    assert missing.status == 404
    assert orjson.loads(missing.body)["error"] == {
        "message": 'model "ghost" not found',
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    anthropic = await sim.handle(_request("/v1/messages", {"model": "ghost", "max_tokens": 5}))
    assert anthropic.status == 404
    assert orjson.loads(anthropic.body)["error"]["type"] == "not_found_error"


async def test_empty_prompt_loads_and_keep_alive_zero_unloads() -> None:
    sim = Simulator(**UNPACED)
    loaded = orjson.loads((await sim.handle(_request("/api/generate", {"model": "llama3.2"}))).body)
    assert (loaded["done"], loaded["done_reason"]) == (True, "load")
    ps = orjson.loads((await sim.handle(_request("/api/ps", method="GET"))).body)
    assert [m["name"] for m in ps["models"]] == ["llama3.2:latest"]
    body = {"model": "llama3.2", "messages": [], "keep_alive": 0}
    unloaded = orjson.loads((await sim.handle(_request("/api/chat", body))).body)
    assert unloaded["done_reason"] == "unload" and unloaded["message"]["role"] == "assistant"
    ps = orjson.loads((await sim.handle(_request("/api/ps", method="GET"))).body)
    assert ps["models"] == []


async def test_busy_and_bad_json_faults_answer_before_the_model() -> None:
    sim = Simulator(**UNPACED)
    sim.faults.update({"busy": True, "times": 1})
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    busy = await sim.handle(_request("/api/chat", body))
    assert busy.status == 503
    assert orjson.loads(busy.body)["error"].startswith("server busy, please try again.")
    assert (await sim.handle(_request("/api/chat", body))).status == 200
    sim.faults.bad_json = True
    garbage = await sim.handle(_request("/api/chat", body))
    assert garbage.status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(garbage.body)
    version = await sim.handle(_request("/api/version", method="GET"))
    assert orjson.loads(version.body) == {"version": "0.12.6"}


async def test_faults_are_driven_over_http_control_endpoints() -> None:
    sim = Simulator()
    set_ = await sim.handle(_request("/_sim/faults", {"status_500": True, "scope": "all"}))
    assert set_.status == 200 and sim.faults.status_500
    crashed = await sim.handle(_request("/api/version", method="GET"))
    assert crashed.status == 500
    bad = await sim.handle(_request("/_sim/faults", {"bogus": 1}))
    assert bad.status == 400 and "bogus" in orjson.loads(bad.body)["error"]
    await sim.handle(_request("/_sim/faults", method="DELETE"))
    assert not sim.faults.active
    stats = orjson.loads((await sim.handle(_request("/_sim/stats", method="GET"))).body)
    assert stats["requests"]["/api/version"] == 1


async def test_streamed_chat_in_process_is_ndjson() -> None:
    sim = Simulator(**UNPACED)
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    response = await sim.handle(_request("/api/chat", body))
    assert (b"Content-Type", b"application/x-ndjson") in response.headers
    lines = [orjson.loads(c) for c in await _collect(response)]
    assert lines[-1]["done"] and lines[-1]["eval_count"] == 24


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/embed", {"model": "ghost", "input": "x"}, "model 'ghost' not found"),
        ("/api/embeddings", {"model": "ghost", "prompt": "x"}, 'model "ghost" not found, try '),
        ("/api/show", {"model": "ghost"}, "model 'ghost' not found"),
        ("/api/delete", {"model": "ghost"}, "model 'ghost' not found"),
        ("/api/copy", {"source": "ghost", "destination": "x"}, 'model "ghost" not found'),
    ],
)
async def test_missing_models_are_worded_per_endpoint_as_ollama_does(
    path: str, body: dict[str, str], error: str
) -> None:
    method = "DELETE" if path == "/api/delete" else "POST"
    response = await Simulator().handle(_request(path, body, method=method))
    assert response.status == 404
    assert orjson.loads(response.body)["error"].startswith(error)
