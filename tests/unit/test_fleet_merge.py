"""Folding many backends' answers into one: model lists, versions, results, progress streams."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ollama._types import ListResponse

from corral.http.fanin import Fanin, FaninStream, Passthrough
from corral.http.fanout import (
    LineSplitter,
    ProgressMerger,
    error_message,
    lowest_version,
    merge_openai_models,
    merge_ps,
    merge_tags,
    results_header,
    version_key,
)
from corral.testing.models import ModelCatalogue
from corral.testing.transfers import pull_steps


def tag(name: str, digest: str, modified_at: str = "2025-05-01T00:00:00Z") -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": modified_at,
        "size": 1000,
        "digest": digest,
        "details": {"format": "gguf", "family": "llama"},
    }


# ---- /api/tags, /v1/models, /api/ps ------------------------------------------------------------


def test_tags_union_lists_each_model_once() -> None:
    gpu1 = {"models": [tag("llama3.2:latest", "aa"), tag("qwen2.5:0.5b", "bb")]}
    gpu2 = {"models": [tag("qwen2.5:0.5b", "bb"), tag("mistral:latest", "cc")]}
    merged = merge_tags([("gpu1", gpu1), ("gpu2", gpu2)])
    names = [m["name"] for m in merged["models"]]
    assert sorted(names) == ["llama3.2:latest", "mistral:latest", "qwen2.5:0.5b"]
    assert all("corral_digests" not in m for m in merged["models"])


def test_tags_with_disagreeing_digests_say_which_backend_holds_which() -> None:
    gpu1 = {"models": [tag("llama3.2:latest", "aa", "2025-05-02T00:00:00Z")]}
    gpu2 = {"models": [tag("llama3.2", "zz")]}  # the same model, spelled without its tag
    gpu3 = {"models": [tag("llama3.2:latest", "aa")]}
    merged = merge_tags([("gpu1", gpu1), ("gpu2", gpu2), ("gpu3", gpu3)])
    [entry] = merged["models"]
    # The first backend's entry speaks for the model; the disagreement is on the side.
    assert entry["digest"] == "aa"
    assert entry["modified_at"] == "2025-05-02T00:00:00Z"
    assert entry["corral_digests"] == {"gpu1": "aa", "gpu2": "zz", "gpu3": "aa"}


def test_the_official_client_accepts_the_extra_digest_field() -> None:
    merged = merge_tags(
        [("gpu1", {"models": [tag("x:latest", "aa")]}), ("gpu2", {"models": [tag("x", "bb")]})]
    )
    parsed = ListResponse.model_validate(orjson.loads(orjson.dumps(merged)))
    assert [m.model for m in parsed.models] == ["x:latest"]
    assert parsed.models[0].digest == "aa"


def test_tags_are_listed_newest_first_whatever_the_backend_order() -> None:
    old = tag("old:latest", "1", "2024-01-01T00:00:00.123456789Z")
    new = tag("new:latest", "2", "2025-06-01T10:00:00.5-07:00")
    undated = {"name": "undated:latest", "digest": "3"}
    forward = merge_tags([("a", {"models": [old, undated]}), ("b", {"models": [new]})])
    backward = merge_tags([("b", {"models": [new]}), ("a", {"models": [undated, old]})])
    expected = ["new:latest", "old:latest", "undated:latest"]
    assert [m["name"] for m in forward["models"]] == expected
    assert [m["name"] for m in backward["models"]] == expected


def test_tags_skip_answers_that_are_not_model_lists() -> None:
    merged = merge_tags([("a", None), ("b", {"models": "no"}), ("c", {"models": [1, {}]})])
    assert merged == {"models": []}


def test_openai_models_union_by_id() -> None:
    gpu1 = {"object": "list", "data": [{"id": "llama3.2:latest", "created": 10}]}
    gpu2 = {"object": "list", "data": [{"id": "llama3.2:latest", "created": 5}, {"id": "phi"}]}
    gpu3 = {"object": "list", "data": [{"id": "qwen3:8b", "created": 20}]}
    merged = merge_openai_models([("gpu1", gpu1), ("gpu2", gpu2), ("gpu3", gpu3)])
    assert merged["object"] == "list"
    assert [(m["id"], m.get("created")) for m in merged["data"]] == [
        ("qwen3:8b", 20),
        ("llama3.2:latest", 10),
        ("phi", None),
    ]


def test_ps_lists_every_loaded_model_with_its_backend() -> None:
    gpu1 = {"models": [{"name": "a:latest", "expires_at": "2025-01-01T00:05:00Z"}]}
    gpu2 = {
        "models": [
            {"name": "a:latest", "expires_at": "2025-01-01T00:10:00Z"},
            {"name": "b:latest", "expires_at": "2025-01-01T00:01:00Z"},
        ]
    }
    merged = merge_ps([("gpu1", gpu1), ("gpu2", gpu2)], label=True)
    assert [(m["name"], m["corral_backend"]) for m in merged["models"]] == [
        ("a:latest", "gpu2"),
        ("a:latest", "gpu1"),
        ("b:latest", "gpu2"),
    ]
    assert "corral_backend" not in merge_ps([("gpu1", gpu1)], label=False)["models"][0]


# ---- /api/version ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "lowest"),
    [
        (["0.12.6", "0.5.1", "0.12.0"], "0.5.1"),  # numbers, not strings: 5 < 12
        (["0.12.0", "0.12.0-rc1"], "0.12.0-rc1"),  # a pre-release is below its release
        (["0.12", "0.12.0"], "0.12"),  # equal: the first one
        (["v0.3.0", "0.2.9"], "0.2.9"),
        (["unknown", "0.12.6"], "0.12.6"),  # unreadable versions come last
        (["0.1.0-rc2", "0.1.0-rc10", "0.1.0"], "0.1.0-rc10"),
    ],
)
def test_lowest_version(versions: list[str], lowest: str) -> None:
    assert versions[lowest_version(versions)] == lowest


def test_version_order_is_total() -> None:
    ordered = ["0.0.1", "0.5.1", "0.12.0-rc1", "0.12.0", "0.12.1", "1.0.0", "", "dev"]
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=version_key) == ordered
    assert lowest_version([None, "0.1.0"]) == 1


# ---- writes ------------------------------------------------------------------------------------


def test_results_header_lists_every_target_in_order() -> None:
    assert results_header([("gpu1", 200), ("gpu2", 404)]) == b"gpu1=200, gpu2=404"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, b'{"error":"model \'x\' not found"}', "model 'x' not found"),
        (400, b'{"error":{"message":"bad","type":"x"}}', "bad"),
        (500, b"Internal Server Error\n", "Internal Server Error"),
        (502, b"", "answered 502"),
    ],
)
def test_error_message_reads_what_the_backend_said(status: int, body: bytes, message: str) -> None:
    assert error_message(status, body) == message


# ---- NDJSON lines across chunk boundaries ------------------------------------------------------


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=20))
def test_lines_survive_any_chunking(cuts: list[int]) -> None:
    lines = [orjson.dumps({"status": f"line {i}", "n": "x" * i}) for i in range(12)]
    data = b"\n".join(lines) + b"\n"
    splitter, out, at = LineSplitter(), [], 0
    for size in cuts:
        out += splitter.feed(data[at : at + size])
        at += size
    out += splitter.feed(data[at:])
    assert out + splitter.flush() == lines


def test_a_last_line_without_newline_is_kept() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":1}\n{"status":"suc') == [b'{"a":1}']
    assert splitter.feed(b'cess"}') == []
    assert splitter.flush() == [b'{"status":"success"}']


# ---- merged pull progress ----------------------------------------------------------------------


def pull_lines(model: str = "llama3.2") -> list[bytes]:
    info = ModelCatalogue([model]).get(model)
    assert info is not None
    steps = [*pull_steps(info), {"status": "success"}]
    return [orjson.dumps(step) + b"\n" for step in steps]


def decode(out: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line]


def test_status_lines_come_once_and_success_only_after_every_target() -> None:
    merger = ProgressMerger(["gpu1", "gpu2"])
    out = b""
    for line in pull_lines():
        out += merger.feed(0, line)
    out += merger.finish(0, None)
    assert b'"success"' not in out  # gpu2 is still pulling
    for line in pull_lines():
        out += merger.feed(1, line)
    out += merger.finish(1, None)
    statuses = [m["status"] for m in decode(out) if "digest" not in m]
    assert statuses == [
        "pulling manifest",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert merger.done


def test_layer_progress_is_summed_over_targets_and_counts_targets_yet_to_start() -> None:
    merger = ProgressMerger(["gpu1", "gpu2", "gpu3"])
    first = decode(merger.feed(0, b'{"status":"pulling ab","digest":"sha256:ab","total":100}\n'))
    # Two more targets will pull the same blob: the bar's total is known from the start.
    assert first == [{"status": "pulling ab", "digest": "sha256:ab", "total": 300}]
    line = b'{"status":"pulling ab","digest":"sha256:ab","total":100,"completed":%d}\n'
    assert decode(merger.feed(0, line % 40))[0]["completed"] == 40
    assert decode(merger.feed(1, line % 30))[0] == {
        "status": "pulling ab",
        "digest": "sha256:ab",
        "total": 300,
        "completed": 70,
    }
    merger.feed(2, line % 100)
    merger.feed(0, line % 100)
    assert decode(merger.feed(1, line % 100))[0]["completed"] == 300


@settings(max_examples=60)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=1, max_value=4))
def test_merged_progress_never_goes_back_whatever_the_interleaving(seed: int, targets: int) -> None:
    rnd = random.Random(seed)
    streams = [b"".join(pull_lines()) for _ in range(targets)]
    positions = [0] * targets
    merger = ProgressMerger([f"gpu{i}" for i in range(targets)])
    out = b""
    # Chunks of random sizes, cutting lines anywhere, from targets in random order.
    while any(p < len(s) for p, s in zip(positions, streams, strict=True)):
        index = rnd.choice([i for i in range(targets) if positions[i] < len(streams[i])])
        size = rnd.randint(1, 90)
        out += merger.feed(index, streams[index][positions[index] : positions[index] + size])
        positions[index] += size
        if positions[index] >= len(streams[index]):
            out += merger.finish(index, None)
    messages = decode(out)
    seen: dict[str, tuple[int, int]] = {}
    for message in messages:
        if "digest" in message:
            total, done = message["total"], message.get("completed", 0)
            last_total, last_done = seen.get(message["digest"], (0, 0))
            assert total >= last_total and done >= last_done and done <= total
            seen[message["digest"]] = (total, done)
    info = ModelCatalogue(["llama3.2"]).get("llama3.2")
    assert info is not None
    # Every layer ends complete, at the blob's size times the number of targets.
    assert all(total == done for total, done in seen.values())
    assert {total for total, _ in seen.values()} <= {
        s["total"] * targets for s in pull_steps(info) if "total" in s
    }
    assert messages[-1] == {"status": "success"}
    assert [m for m in messages if m.get("status") == "success"] == [{"status": "success"}]


def test_a_failed_target_turns_success_into_one_error_line_after_the_others_finish() -> None:
    merger = ProgressMerger(["gpu1", "gpu2", "gpu3"])
    out = merger.feed(1, b'{"status":"pulling manifest"}\n{"error":"pull model manifest: eof"}\n')
    out += merger.finish(1, None)
    out += merger.finish(2, "backend closed the connection")
    assert b"error" not in out  # gpu1 is still going
    for line in pull_lines():
        out += merger.feed(0, line)
    out += merger.finish(0, None)
    messages = decode(out)
    assert messages[-1] == {
        "error": "gpu2: pull model manifest: eof; gpu3: backend closed the connection"
    }
    assert not any(m.get("status") == "success" for m in messages)


def test_a_stream_that_stops_before_success_is_a_failure() -> None:
    merger = ProgressMerger(["gpu1"])
    out = merger.feed(0, b'{"status":"pulling manifest"}\n')
    out += merger.finish(0, None)
    assert decode(out)[-1] == {"error": "gpu1: stream ended before success"}


def test_create_status_lines_are_emitted_once() -> None:
    lines = [
        b'{"status":"reading model metadata"}\n',
        b'{"status":"using already created layer sha256:aa"}\n',
        b'{"status":"writing manifest"}\n',
        b'{"status":"success"}\n',
    ]
    merger = ProgressMerger(["gpu1", "gpu2"])
    out = b"".join(merger.feed(0, line) + merger.feed(1, line) for line in lines)
    out += merger.finish(0, None) + merger.finish(1, None)
    assert out == b"".join(lines)


# ---- the fan-in: several upstream bodies as they arrive ---------------------------------------


class FakeUpstream:
    """What Fanin needs of an UpstreamResponse: relay, flow control and close."""

    def __init__(self) -> None:
        self.sink: Any = None
        self.closed = False
        self.paused = False

    def relay(self, sink: Any) -> None:
        self.sink = sink

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True


async def test_fanin_stream_merges_as_chunks_arrive_and_closes_on_the_way_out() -> None:
    upstreams = [FakeUpstream(), FakeUpstream()]
    fanin = Fanin(2)
    for i, upstream in enumerate(upstreams):
        fanin.attach(i, upstream)  # type: ignore[arg-type]
    closed: list[bool] = []
    stream = FaninStream(fanin, ProgressMerger(["a", "b"]), lambda: closed.append(True))
    upstreams[0].sink.on_chunk(b'{"status":"pulling man')
    upstreams[1].sink.on_chunk(b'{"status":"pulling manifest"}\n{"status":"success"}\n')
    upstreams[1].sink.on_complete()
    assert await anext(stream) == b'{"status":"pulling manifest"}\n'
    upstreams[0].sink.on_chunk(b'ifest"}\n{"status":"success"}\n')
    upstreams[0].sink.on_complete()
    assert await anext(stream) == b'{"status":"success"}\n'
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert closed == [True]
    assert all(u.closed for u in upstreams)


async def test_closing_the_stream_early_closes_every_upstream() -> None:
    upstreams = [FakeUpstream(), FakeUpstream(), FakeUpstream()]
    fanin = Fanin(3)
    for i, upstream in enumerate(upstreams):
        fanin.attach(i, upstream)  # type: ignore[arg-type]
    stream = FaninStream(fanin, ProgressMerger(["a", "b", "c"]), lambda: None)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    waiting.cancel()  # the client left while the stream waited for progress
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await stream.aclose()
    assert all(u.closed for u in upstreams)


async def test_a_slow_reader_pauses_the_upstream_until_it_catches_up() -> None:
    upstream = FakeUpstream()
    fanin = Fanin(1)
    fanin.attach(0, upstream)  # type: ignore[arg-type]
    chunk = b"x" * (256 * 1024)
    for _ in range(5):
        upstream.sink.on_chunk(chunk)
    assert upstream.paused
    for _ in range(3):
        await fanin.next()
    assert not upstream.paused


async def test_passthrough_ends_a_broken_stream_with_an_error_line() -> None:
    upstream = FakeUpstream()
    fanin = Fanin(1)
    fanin.attach(0, upstream)  # type: ignore[arg-type]
    stream = FaninStream(fanin, Passthrough(), lambda: None)
    upstream.sink.on_chunk(b'{"status":"pulling manifest"}\n{"stat')
    upstream.sink.on_failure("backend closed the connection")
    assert await anext(stream) == b'{"status":"pulling manifest"}\n{"stat'
    assert await anext(stream) == b'{"error":"upstream error: backend closed the connection"}\n'
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_a_target_refused_before_streaming_still_settles_the_fanin() -> None:
    fanin = Fanin(2)
    fanin.refuse(0, "model is required")
    assert not fanin.ready.is_set()
    fanin.refuse(1, "model is required")
    assert fanin.ready.is_set() and not fanin.streaming
