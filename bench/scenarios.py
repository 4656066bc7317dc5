"""The four scenarios. Each starts its own simulator and corral, primes both paths, measures the
direct connection and the path through corral in alternating rounds (direct, corral, direct,
corral...), and turns the medians into report rows.

A ratio or an added latency is the median of the per-round pairs: a pair is measured seconds
apart, so a noisy neighbour slows both of its halves and cancels out.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.procs import (
    MODEL,
    Pinning,
    Service,
    ServiceFailed,
    run_tool,
    start_corral,
    start_simulator,
)
from bench.profiles import UNPACED, Profile
from bench.report import TIMES, Compare, Row, ScenarioResult
from bench.stats import median
from bench.wrk import WrkFailed, run_wrk

Run = dict[str, Any]
Runs = dict[str, list[Run]]

CPU_TARGET = 35.0
NGINX_CPU = 22.0
RSS_TARGET_MB = 60.0
# Above this the core shared by simulator and load generator was nearly full: the load side may
# have held the run back, and the figures say less about corral.
BUSY_CORE = 90.0
PRIME_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Bench:
    profile: Profile
    pinning: Pinning
    use_wrk: bool


def chat_body(num_predict: int, *, stream: bool) -> str:
    return json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
            "options": {"num_predict": num_predict},
        },
        separators=(",", ":"),
    )


@contextmanager
def stack(
    bench: Bench, tokens_per_second: float, first_token_ms: float
) -> Iterator[tuple[Service, Service]]:
    """A simulator and a corral in front of it, both primed; stopped on the way out."""
    sim = start_simulator(tokens_per_second, first_token_ms, bench.pinning.load)
    try:
        corral = start_corral(sim.url, bench.pinning.corral)
        try:
            for service in (sim, corral):
                prime(service)
            yield sim, corral
        finally:
            corral.stop()
    finally:
        sim.stop()


def prime(service: Service) -> None:
    """One short answer of each kind, so the first measured request finds everything warm."""
    for stream in (False, True):
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=PRIME_TIMEOUT)
        try:
            conn.request(
                "POST", "/api/chat", chat_body(1, stream=stream),
                {"Content-Type": "application/json"},
            )  # fmt: skip
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as err:
            raise ServiceFailed(f"priming {service.name} failed: {err}") from err
        finally:
            conn.close()
        if response.status != 200:
            raise ServiceFailed(f"priming {service.name}: status {response.status}")


def loadgen(bench: Bench, args: list[str], timeout: float) -> Run:
    argv = [sys.executable, "-m", "bench.loadgen", *args]
    done = run_tool("the load generator", argv, bench.pinning.load, timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ServiceFailed(f"the load generator failed (exit {done.returncode}): {tail}")
    result: Run = json.loads(lines[-1])
    return result


def watching(*services: Service) -> list[str]:
    args = []
    for service in services:
        args += ["--watch", f"{service.name}={service.pid}"]
    return args


def alternate(
    bench: Bench, sim: Service, corral: Service, measure: Callable[[Service], Run]
) -> Runs:
    runs: Runs = {"direct": [], "corral": []}
    for _ in range(bench.profile.rounds):
        for label, target in (("direct", sim), ("corral", corral)):
            runs[label].append(measure(target))
            sim.check_alive()
            corral.check_alive()
    return runs


def figure(key: str, percentile: str) -> Callable[[Run], float | None]:
    """Reads ``run[key][percentile]``, e.g. the p99 of ``ttft_ms``."""

    def read(run: Run) -> float | None:
        value: float | None = run[key][percentile]
        return value

    return read


def paired(
    runs: Runs, value: Callable[[Run], float | None], compare: Compare
) -> tuple[float, float, float]:
    """Median direct, median corral, and the median per-round ratio or difference."""

    def get(run: Run) -> float:
        found = value(run)
        return float("nan") if found is None else float(found)

    direct = [get(r) for r in runs["direct"]]
    corral = [get(r) for r in runs["corral"]]
    if compare == "ratio":
        changes = [c / d if d else float("nan") for d, c in zip(direct, corral, strict=True)]
    else:
        changes = [c - d for d, c in zip(direct, corral, strict=True)]
    return median(direct), median(corral), median(changes)


def problems_in(runs: Runs) -> list[str]:
    """Answers outside 2xx and broken streams, per path and round."""
    found = []
    for label, results in runs.items():
        for index, run in enumerate(results, 1):
            where = f"{label}, round {index}"
            for code, count in run.get("statuses", {}).items():
                if not code.startswith("2"):
                    found.append(f"{where}: {count} answers with status {code}")
            for reason, count in run.get("broken", {}).items():
                found.append(f"{where}: {reason} ({count} times)")
    return found


def busy_core_notes(runs: Runs) -> list[str]:
    notes = []
    for label, results in runs.items():
        for index, run in enumerate(results, 1):
            cpu = run.get("cpu_percent", {})
            load_side = cpu.get("loadgen", 0.0) + cpu.get("simulator", 0.0)
            if load_side > BUSY_CORE:
                notes.append(
                    f"{label}, round {index}: simulator + load generator used {load_side:.0f}%"
                    " of their core; the load side may have held this run back"
                )
    return notes


# ---- (a) ---------------------------------------------------------------------------------------


def requests_per_second(bench: Bench) -> ScenarioResult:
    p = bench.profile
    result = ScenarioResult("a", f"non-streaming /api/chat, {p.a_connections} clients")
    body = chat_body(p.a_num_predict, stream=False)
    result.setup = {
        "connections": p.a_connections, "seconds": p.a_duration, "num_predict": p.a_num_predict,
        "simulator": {"tokens_per_second": UNPACED, "first_token_ms": 0},
        "client": "wrk" if bench.use_wrk else "bench.loadgen loop",
    }  # fmt: skip

    def measure(target: Service) -> Run:
        if bench.use_wrk:
            return run_wrk(
                target.port, body, connections=p.a_connections, duration=p.a_duration,
                cpus=bench.pinning.load,
            )  # fmt: skip
        args = [
            "loop", "--port", str(target.port), "--body", body,
            "--connections", str(p.a_connections), "--warmup", "0.5",
            "--duration", str(p.a_duration),
        ]  # fmt: skip
        return loadgen(bench, args, timeout=p.a_duration + 60)

    with stack(bench, UNPACED, 0) as (sim, corral):
        result.runs = alternate(bench, sim, corral, measure)
    direct, through, ratio = paired(result.runs, lambda r: r["responses_per_s"], "ratio")
    reference = f"nginx {TIMES}0.71 (ref.)"
    result.rows.append(
        Row(f"(a) {result.title}", "req/s", direct, through, "ratio", ratio, reference)
    )
    result.problems = problems_in(result.runs)
    return result


# ---- (b) ---------------------------------------------------------------------------------------


def concurrent_streams(bench: Bench) -> ScenarioResult:
    p = bench.profile
    title = f"{p.b_streams} streams of {p.b_tokens} tokens"
    result = ScenarioResult("b", title)
    body = chat_body(p.b_tokens, stream=True)
    timeout = p.b_ramp + 2 * p.b_stream_seconds + 10
    result.setup = {
        "streams": p.b_streams, "tokens": p.b_tokens, "ramp_s": p.b_ramp,
        "simulator": {"tokens_per_second": p.b_tokens_per_second, "first_token_ms": 0},
    }  # fmt: skip

    with stack(bench, p.b_tokens_per_second, 0) as (sim, corral):

        def measure(target: Service) -> Run:
            args = [
                "streams", "--port", str(target.port), "--body", body,
                "--streams", str(p.b_streams), "--ramp", str(p.b_ramp),
                "--timeout", str(timeout), *watching(sim, corral),
            ]  # fmt: skip
            return loadgen(bench, args, timeout=timeout + 30)

        result.runs = alternate(bench, sim, corral, measure)

    runs = result.runs
    for label, key, percentile in (
        ("added TTFT", "ttft_ms", "p50"),
        ("added TTFT", "ttft_ms", "p99"),
        ("added inter-chunk gap", "gap_ms", "p50"),
        ("added inter-chunk gap", "gap_ms", "p99"),
    ):
        direct, through, added = paired(runs, figure(key, percentile), "added")
        reference = "nginx +0.09 ms (ref.)" if (key, percentile) == ("ttft_ms", "p99") else ""
        result.rows.append(
            Row(f"(b) {label} {percentile}, {title}", "ms", direct, through, "added", added,
                reference)
        )  # fmt: skip
    cpu = median([r["cpu_percent"].get("corral", float("nan")) for r in runs["corral"]])
    result.rows.append(
        Row(f"(b) corral CPU, % of one core, {p.b_streams} streams", "%", None, cpu, "absolute",
            target=f"< {CPU_TARGET:g}% (nginx {NGINX_CPU:g}%)", passed=cpu < CPU_TARGET)
    )  # fmt: skip
    chunk_rate = p.b_streams * p.b_tokens_per_second
    result.notes.append(
        f"streams start evenly over {p.b_ramp:g} s; simulator at {p.b_tokens_per_second:g}"
        f" tokens/s per stream ({chunk_rate:,.0f} chunks/s at full concurrency)"
    )
    if not all(r.get("cpu_window_all_streaming") for r in runs["corral"]):
        result.notes.append(
            "corral CPU measured over the whole run: the streams never all ran at once"
        )
    result.notes += busy_core_notes(runs)
    result.problems = problems_in(runs)
    return result


# ---- (c) ---------------------------------------------------------------------------------------


def chunk_throughput(bench: Bench) -> ScenarioResult:
    p = bench.profile
    title = f"streamed chunks/s, {p.c_connections} unpaced streams"
    result = ScenarioResult("c", title)
    body = chat_body(p.c_tokens, stream=True)
    result.setup = {
        "connections": p.c_connections, "tokens_per_request": p.c_tokens,
        "seconds": p.c_duration, "simulator": {"tokens_per_second": UNPACED, "first_token_ms": 0},
    }  # fmt: skip

    with stack(bench, UNPACED, 0) as (sim, corral):

        def measure(target: Service) -> Run:
            args = [
                "loop", "--port", str(target.port), "--body", body,
                "--connections", str(p.c_connections), "--warmup", str(p.c_warmup),
                "--duration", str(p.c_duration), *watching(sim, corral),
            ]  # fmt: skip
            return loadgen(bench, args, timeout=p.c_warmup + p.c_duration + 60)

        result.runs = alternate(bench, sim, corral, measure)

    direct, through, ratio = paired(result.runs, lambda r: r["lines_per_s"], "ratio")
    result.rows.append(Row(f"(c) {title}", "chunks/s", direct, through, "ratio", ratio))
    cpu = median([r["cpu_percent"].get("corral", float("nan")) for r in result.runs["corral"]])
    result.notes.append(
        f"corral used {cpu:.0f}% of its core while relaying (near 100%: corral is the bottleneck)"
    )
    result.problems = problems_in(result.runs)
    return result


# ---- (d) ---------------------------------------------------------------------------------------


def open_stream_memory(bench: Bench) -> ScenarioResult:
    p = bench.profile
    title = f"corral RSS, {p.d_streams} open streams"
    result = ScenarioResult("d", title)
    timeout = p.b_ramp + 30
    # Enough tokens that no stream ends while held.
    tokens = int(p.d_tokens_per_second * (timeout + p.d_hold)) + 10
    body = chat_body(tokens, stream=True)
    result.setup = {
        "streams": p.d_streams, "hold_s": p.d_hold, "ramp_s": p.b_ramp,
        "simulator": {"tokens_per_second": p.d_tokens_per_second, "first_token_ms": 0},
    }  # fmt: skip

    with stack(bench, p.d_tokens_per_second, 0) as (_sim, corral):
        args = [
            "streams", "--port", str(corral.port), "--body", body,
            "--streams", str(p.d_streams), "--ramp", str(p.b_ramp),
            "--timeout", str(timeout), "--hold", str(p.d_hold), *watching(corral),
        ]  # fmt: skip
        run = loadgen(bench, args, timeout=timeout + p.d_hold + 30)
        corral.check_alive()
    result.runs = {"corral": [run]}
    idle, peak = run.get("rss_idle_mb"), run.get("rss_open_mb")
    result.rows += [
        Row("(d) corral RSS, idle (before the streams)", "MB", None, idle, "absolute"),
        Row(f"(d) {title}", "MB", None, peak, "absolute", target=f"< {RSS_TARGET_MB:g} MB",
            passed=peak is not None and peak < RSS_TARGET_MB),
    ]  # fmt: skip
    if run.get("streams_open", 0) < p.d_streams:
        result.problems.append(
            f"only {run.get('streams_open', 0)} of {p.d_streams} streams were open while RSS"
            " was sampled"
        )
    result.problems += problems_in(result.runs)
    return result


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "a": requests_per_second,
    "b": concurrent_streams,
    "c": chunk_throughput,
    "d": open_stream_memory,
}
TITLES = {
    "a": "non-streaming /api/chat requests per second",
    "b": "added latency and corral CPU with many concurrent streams",
    "c": "streamed chunks per second through one corral process",
    "d": "corral memory with many open streams",
}


def run_scenario(key: str, bench: Bench) -> ScenarioResult:
    """Run one scenario; a process that fails to start or dies becomes the scenario's error."""
    try:
        return SCENARIOS[key](bench)
    except (ServiceFailed, WrkFailed, OSError) as err:
        return ScenarioResult(key, TITLES[key], error=str(err))
