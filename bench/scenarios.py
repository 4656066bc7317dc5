"""The four scenarios of the benchmark, each from its own simulator and corral to report rows.

See ``bench/__main__.py`` for what each one measures and why.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.instructions import instruction_costs
from bench.procs import REFERENCE, Service, ServiceFailed
from bench.profiles import UNPACED
from bench.reference import reference_proxy, reference_rows
from bench.report import GE, LE, MICRO, TIMES, Row, ScenarioResult
from bench.rounds import (
    Bench,
    Run,
    Runs,
    alternate,
    busy_core_notes,
    chat_body,
    compare,
    corral_median,
    corral_only,
    cpu_per_unit,
    figure,
    loadgen,
    observe,
    stack,
    watching,
)
from bench.variants import VARIANTS, started
from bench.watch import Watch
from bench.wrk import WrkFailed, run_wrk

# (a): corral's requests per second against a direct connection's, at least, and the aim.
RATE_MINIMUM = 0.45
RATE_AIM = 0.6
CPU_TARGET = 35.0
# What corral may add to the time to first token under (b)'s 500 streams, by percentile.
TTFT_TARGETS_MS = {"p50": 0.5, "p99": 1.5}
# Chunks a second one core of corral relays in (c): its CPU time per chunk at most 1/this.
CHUNK_RATE_TARGET = 150_000
NGINX_CPU = 22.0
RSS_TARGET_MB = 60.0
# Limits on, or recording on, keep at least this share of the requests per second without them.
OVERHEAD_TARGET = 0.90


# ---- (a) ---------------------------------------------------------------------------------------


def requests_per_second(bench: Bench) -> ScenarioResult:
    p = bench.profile
    result = ScenarioResult("a", f"non-streaming /api/chat, {p.a_connections} clients")
    body = chat_body(p.a_num_predict, stream=False)
    result.setup = {
        "connections": p.a_connections, "seconds": p.a_duration, "num_predict": p.a_num_predict,
        "simulator": {"tokens_per_second": UNPACED, "first_token_ms": 0},
        "client": "wrk" if bench.use_wrk else "bench.loadgen loop",
        "variants": {
            name: {"env": VARIANTS[name].env, "switched": VARIANTS[name].switch is not None}
            for name in p.a_variants
        },
    }  # fmt: skip

    with (
        stack(bench, UNPACED, 0) as (sim, corral),
        started(p.a_variants, sim, corral, bench) as (variants, skipped),
        reference_proxy(bench, sim) as (nginx, missing),
    ):
        measure = rate_measure(bench, body, sim, corral)
        warm_up(bench, body, [sim, corral, *variants.values(), *nginx.values()])
        result.runs = alternate(bench, sim, corral, measure, {**variants, **nginx})

    runs = result.runs
    rate = compare(runs, figure("responses_per_s"), "ratio", f"(a) req/s, {result.title}", "req/s")
    rate.target = f"{GE} {TIMES}{RATE_MINIMUM:g} (aim {TIMES}{RATE_AIM:g})"
    rate.passed = rate.change is not None and rate.change >= RATE_MINIMUM
    result.rows += [
        rate,
        corral_only(runs, cpu_per_unit("responses_per_s"),
                    "(a) corral CPU time per request", "us"),
    ]  # fmt: skip
    result.rows += variant_rows(runs, p.a_variants, skipped)
    result.rows += reference_rows(bench, runs, missing, [
        (f"(a) nginx (reference): req/s, {p.a_connections} clients", figure("responses_per_s"),
         "ratio", "req/s"),
        ("(a) nginx CPU time per request", cpu_per_unit("responses_per_s", REFERENCE),
         "absolute", "us"),
    ])  # fmt: skip
    if variants:
        result.notes += [
            "rows with a baseline compare two corrals in the same rounds (the direct column is"
            " the baseline); limits on (memory) and recording off are the default corral's own"
            " process, switched for the measurement",
            cpu_per_request_note(runs, list(variants)),
        ]
    cpu = corral_median(runs, figure("cpu_percent", "corral"))
    result.notes.append(f"corral used {cpu:.0f}% of its core during (a)")
    observe(result, bench, corral)
    return result


# Seconds of load each server of (a) gets before the rounds, not measured.
WARM_UP = 1.0


def warm_up(bench: Bench, body: str, targets: list[Service]) -> None:
    """A second of load on each server before the rounds: the first round would otherwise pay
    for what a server does once (connections to the backend, memory it grows into, code run for
    the first time). The loop load generator warms up on its own (``--warmup``)."""
    if not bench.use_wrk:
        return
    seen: set[int] = set()
    for target in targets:
        if target.pid not in seen:  # a switched mode shares its corral's process
            seen.add(target.pid)
            run_wrk(
                target.port, body, connections=bench.profile.a_connections, duration=WARM_UP,
                cpus=bench.pinning.load,
            )  # fmt: skip


def rate_measure(
    bench: Bench, body: str, sim: Service, corral: Service
) -> Callable[[Service], Run]:
    """(a)'s measurement of one target, the simulator, a corral or nginx, with the CPU time of
    that corral read as "corral" (the default corral's when the target is the simulator), or
    of nginx as "nginx"."""
    p = bench.profile

    def measure(target: Service) -> Run:
        watched = corral if target is sim else target
        name = REFERENCE if target.name == REFERENCE else "corral"
        if not bench.use_wrk:
            args = [
                "loop", "--port", str(target.port), "--body", body,
                "--connections", str(p.a_connections), "--warmup", "0.5",
                "--duration", str(p.a_duration),
                "--watch", f"simulator={sim.pid}", "--watch", f"{name}={watched.pid}",
            ]  # fmt: skip
            return loadgen(bench, args, timeout=p.a_duration + 60)
        watch = Watch({"simulator": sim.pid, name: watched.pid})
        before = watch.cpu()
        run = run_wrk(
            target.port, body, connections=p.a_connections, duration=p.a_duration,
            cpus=bench.pinning.load,
        )  # fmt: skip
        run["cpu_percent"] = Watch.percent(before, watch.cpu())
        return run

    return measure


def variant_rows(runs: Runs, names: tuple[str, ...], skipped: dict[str, str]) -> list[Row]:
    """(a)'s rows for the variants in ``names``: their req/s against the default corral's."""
    rows = []
    if "limits-memory" in names:
        metric = "(a) req/s, limits on (memory); baseline: limits off"
        rows.append(overhead_row(runs, metric, baseline="corral", subject="limits-memory"))
    if "limits-redis" in names:
        metric = "(a) req/s, limits on (Redis); baseline: limits off"
        reason = skipped.get("limits-redis")
        if reason is not None:
            rows.append(Row(metric, "req/s", None, None, "ratio", unmeasured=reason))
        else:
            rows += [
                compare(runs, figure("responses_per_s"), "ratio", metric, "req/s",
                        baseline="corral", subject="limits-redis"),
                corral_only(runs, cpu_per_unit("responses_per_s"),
                            "(a) corral CPU time per request, limits on (Redis)", "us",
                            label="limits-redis"),
            ]  # fmt: skip
    if "recording-off" in names:
        metric = "(a) req/s, recording on (logs, metrics, usage); baseline: recording off"
        rows.append(overhead_row(runs, metric, baseline="recording-off", subject="corral"))
    if "default-again" in names:
        metric = "(a) req/s, a second default corral; baseline: the first (noise floor)"
        rows.append(
            compare(runs, figure("responses_per_s"), "ratio", metric, "req/s",
                    baseline="corral", subject="default-again")
        )  # fmt: skip
    return rows


def cpu_per_request_note(runs: Runs, variants: list[str]) -> str:
    """Each corral's CPU time per request: unlike its req/s, not lowered by other processes that
    share its core, so the steadier comparison on a busy machine."""
    read = cpu_per_unit("responses_per_s")
    figures = ", ".join(
        f"{corral_median(runs, read, label):.1f} {MICRO}s ({label})"
        for label in ("corral", *variants)
    )
    return f"corral CPU time per request: {figures}"


def overhead_row(runs: Runs, metric: str, *, baseline: str, subject: str) -> Row:
    """req/s of ``subject`` against ``baseline``: the target is to keep ``OVERHEAD_TARGET`` of
    it, that is to cost at most 10% of the throughput."""
    row = compare(
        runs, figure("responses_per_s"), "ratio", metric, "req/s",
        target=f"{GE} {TIMES}{OVERHEAD_TARGET:.2f}", baseline=baseline, subject=subject,
    )  # fmt: skip
    row.passed = row.change is not None and row.change >= OVERHEAD_TARGET
    return row


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

    with (
        stack(bench, p.b_tokens_per_second, 0) as (sim, corral),
        reference_proxy(bench, sim) as (nginx, missing),
    ):

        def measure(target: Service) -> Run:
            args = [
                "streams", "--port", str(target.port), "--body", body,
                "--streams", str(p.b_streams), "--ramp", str(p.b_ramp),
                "--timeout", str(timeout), *watching(sim, corral, *nginx.values()),
            ]  # fmt: skip
            return loadgen(bench, args, timeout=timeout + 30)

        result.runs = alternate(bench, sim, corral, measure, nginx)

    runs = result.runs
    for label, key in (("TTFT", "ttft_ms"), ("inter-chunk gap", "gap_ms")):
        for percentile in ("p50", "p99"):
            metric = f"(b) added {label} {percentile}, {title}"
            row = compare(runs, figure(key, percentile), "added", metric, "ms")
            bound = TTFT_TARGETS_MS.get(percentile) if key == "ttft_ms" else None
            if bound is not None:
                row.target = f"< {bound:g} ms"
                row.passed = row.change is not None and row.change < bound
            result.rows.append(row)
    cpu = corral_only(
        runs, figure("cpu_percent", "corral"), f"(b) corral CPU, {p.b_streams} streams", "%"
    )
    cpu.target = f"< {CPU_TARGET:g}% (nginx {NGINX_CPU:g}%)"
    cpu.passed = cpu.corral is not None and cpu.corral < CPU_TARGET
    result.rows.append(cpu)
    result.rows += reference_rows(bench, runs, missing, [
        (f"(b) nginx (reference): added TTFT {percentile}", figure("ttft_ms", percentile),
         "added", "ms")
        for percentile in ("p50", "p99")
    ] + [(f"(b) nginx CPU, {p.b_streams} streams", figure("cpu_percent", REFERENCE),
          "absolute", "%")])  # fmt: skip
    chunk_rate = p.b_streams * p.b_tokens_per_second
    result.notes.append(
        f"streams start evenly over {p.b_ramp:g} s; the simulator sends"
        f" {p.b_tokens_per_second:g} tokens/s per stream ({chunk_rate:,.0f} chunks/s with all"
        " streaming); CPU is % of one core while all streams run at once"
    )
    if not all(run.get("cpu_window_all_streaming") for run in runs["corral"]):
        result.notes.append(
            "corral CPU measured over the whole run: the streams never all ran at once"
        )
    result.notes += busy_core_notes(runs)
    observe(result, bench, corral)
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

    with (
        stack(bench, UNPACED, 0) as (sim, corral),
        reference_proxy(bench, sim) as (nginx, missing),
    ):

        def measure(target: Service) -> Run:
            args = [
                "loop", "--port", str(target.port), "--body", body,
                "--connections", str(p.c_connections), "--warmup", str(p.c_warmup),
                "--duration", str(p.c_duration), *watching(sim, corral, *nginx.values()),
            ]  # fmt: skip
            return loadgen(bench, args, timeout=p.c_warmup + p.c_duration + 60)

        result.runs = alternate(bench, sim, corral, measure, nginx)

    runs = result.runs
    per_chunk = corral_only(
        runs, cpu_per_unit("lines_per_s"), "(c) corral CPU time per chunk", "us"
    )
    per_chunk.target = f"{LE} {1e6 / CHUNK_RATE_TARGET:.2f} {MICRO}s ({CHUNK_RATE_TARGET:,} a core)"
    per_chunk.passed = per_chunk.corral is not None and per_chunk.corral <= 1e6 / CHUNK_RATE_TARGET
    result.rows += [
        compare(runs, figure("lines_per_s"), "ratio", f"(c) {title}", "chunks/s"),
        per_chunk,
    ]
    result.rows += reference_rows(bench, runs, missing, [
        (f"(c) nginx (reference): chunks/s, {p.c_connections} unpaced streams",
         figure("lines_per_s"), "ratio", "chunks/s"),
        ("(c) nginx CPU time per chunk", cpu_per_unit("lines_per_s", REFERENCE), "absolute", "us"),
    ])  # fmt: skip
    cpu = corral_median(runs, figure("cpu_percent", "corral"))
    capacity = 1e6 / per_chunk.corral if per_chunk.corral else float("nan")
    result.notes.append(
        f"corral used {cpu:.0f}% of its core; at {per_chunk.corral:.1f} {MICRO}s a chunk one"
        f" core relays about {capacity:,.0f} chunks/s. Below 100%, the simulator and load"
        " generator (one core between them) set the pace rather than corral"
    )
    observe(result, bench, corral)
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
    runs: Runs = {"corral": [run]}
    result.runs = runs
    peak = corral_only(runs, figure("rss_open_mb"), f"(d) {title}", "MB")
    peak.target = f"< {RSS_TARGET_MB:g} MB"
    peak.passed = peak.corral is not None and peak.corral < RSS_TARGET_MB
    result.rows += [corral_only(runs, figure("rss_idle_mb"), "(d) corral RSS, idle", "MB"), peak]
    open_streams = run.get("streams_open", 0)
    if open_streams < p.d_streams:
        result.problems.append(
            f"only {open_streams} of {p.d_streams} streams were open while RSS was sampled"
        )
    observe(result, bench, corral)
    return result


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "a": requests_per_second,
    "b": concurrent_streams,
    "c": chunk_throughput,
    "d": open_stream_memory,
    "i": instruction_costs,
}
TITLES = {
    "a": "non-streaming /api/chat requests per second",
    "b": "added latency and corral CPU with many concurrent streams",
    "c": "streamed chunks per second through one corral process",
    "d": "corral memory with many open streams",
    "i": "instructions per request: limits and recording, counted by callgrind",
}


def run_scenario(key: str, bench: Bench) -> ScenarioResult:
    """Run one scenario; a process that fails to start or dies becomes the scenario's error."""
    try:
        return SCENARIOS[key](bench)
    except (ServiceFailed, WrkFailed, OSError) as err:
        return ScenarioResult(key, TITLES[key], error=str(err))
