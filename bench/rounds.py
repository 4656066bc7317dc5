"""The mechanics every scenario shares: a primed simulator + corral pair, direct/corral rounds,
the load generator as a subprocess, and the comparison of the rounds.

A ratio or an added latency is the median of the per-round pairs: the two halves of a pair are
measured seconds apart, so a noisy neighbour tends to slow both and cancel out.

Example::

    with stack(bench, tokens_per_second=20, first_token_ms=0) as (sim, corral):
        runs = alternate(bench, sim, corral, measure)
    row = compare(runs, figure("ttft_ms", "p99"), "added", "(b) added TTFT p99", "ms")
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.procs import (
    CORRAL_CORE,
    MODEL,
    REFERENCE,
    Pinning,
    Service,
    ServiceFailed,
    Switched,
    run_tool,
    start_corral,
    start_simulator,
)
from bench.profiles import Profile
from bench.report import Compare, Row, ScenarioResult
from bench.stats import median

Run = dict[str, Any]
Runs = dict[str, list[Run]]

# Above this the core shared by simulator and load generator was nearly full: the load side may
# have held the run back, and the figures say less about corral.
BUSY_CORE = 90.0
# Other processes on corral's core above this share make corral's rates and latencies pessimistic.
FOREIGN_LOAD = 10.0
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
    """Run ``python -m bench.loadgen ARGS`` next to the simulator; its JSON result."""
    argv = [sys.executable, "-m", "bench.loadgen", *args]
    done = run_tool("the load generator", argv, bench.pinning.load, timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ServiceFailed(f"the load generator failed (exit {done.returncode}): {tail}")
    result: Run = json.loads(lines[-1])
    return result


def watching(*services: Service) -> list[str]:
    """Load generator arguments that have it read these processes' CPU time."""
    args = []
    for service in services:
        args += ["--watch", f"{service.name}={service.pid}"]
    return args


def alternate(
    bench: Bench,
    sim: Service,
    corral: Service,
    measure: Callable[[Service], Run],
    variants: Mapping[str, Service] | None = None,
) -> Runs:
    """Direct, corral, direct, corral...: ``profile.rounds`` rounds. Other corrals (``variants``,
    by label) run in every round too, so each compares with the default one round by round; the
    corrals take turns at going first after the direct run, so that no one of them always meets
    whatever the run before it left behind.
    """
    targets = {"direct": sim, "corral": corral, **(variants or {})}
    runs: Runs = {label: [] for label in targets}
    corrals = [label for label in targets if label != "direct"]
    for round_index in range(bench.profile.rounds):
        turn = round_index % len(corrals)
        for label in ["direct", *corrals[turn:], *corrals[:turn]]:
            target = targets[label]
            if isinstance(target, Switched):
                with target.switched():
                    runs[label].append(measure(target))
            else:
                runs[label].append(measure(target))
            for service in targets.values():
                service.check_alive()
    return runs


def figure(*keys: str) -> Callable[[Run], float | None]:
    """Reads ``run[k1][k2]...``, e.g. ``figure("ttft_ms", "p99")``; None where it is missing."""

    def read(run: Run) -> float | None:
        value: Any = run
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return None if value is None else float(value)

    return read


def cpu_per_unit(rate_key: str, process: str = "corral") -> Callable[[Run], float | None]:
    """A process's CPU time per request or chunk, in microseconds: busy fraction / rate."""

    def read(run: Run) -> float | None:
        cpu = run.get("cpu_percent", {}).get(process)
        rate = run.get(rate_key)
        if cpu is None or not rate:
            return None
        return float(cpu) / 100 / float(rate) * 1e6

    return read


def compare(
    runs: Runs,
    read: Callable[[Run], float | None],
    kind: Compare,
    metric: str,
    unit: str,
    target: str = "",
    *,
    baseline: str = "direct",
    subject: str = "corral",
) -> Row:
    """A row of medians, its change being the median of the per-round ratios or differences of
    ``subject`` to ``baseline`` (labels of ``runs``; the row's direct and corral columns)."""

    def values(label: str) -> list[float]:
        return [_or_nan(read(run)) for run in runs.get(label, [])]

    direct, corral = values(baseline), values(subject)
    if kind == "ratio":
        changes = [c / d if d else float("nan") for d, c in zip(direct, corral, strict=True)]
    else:
        changes = [c - d for d, c in zip(direct, corral, strict=True)]
    return Row(
        metric, unit, median(direct), median(corral), kind, median(changes), target,
        direct_rounds=direct, corral_rounds=corral,
    )  # fmt: skip


def corral_only(
    runs: Runs,
    read: Callable[[Run], float | None],
    metric: str,
    unit: str,
    label: str = "corral",
) -> Row:
    """A row of one of corral's own figures (CPU, memory), median over its rounds (or those of
    the corral labelled ``label``)."""
    values = [_or_nan(read(run)) for run in runs.get(label, [])]
    return Row(metric, unit, None, median(values), "absolute", corral_rounds=values)


def corral_median(runs: Runs, read: Callable[[Run], float | None], label: str = "corral") -> float:
    """The median of a figure over the rounds through corral (or the corral labelled ``label``);
    NaN if no round has it."""
    return median([_or_nan(read(run)) for run in runs.get(label, [])])


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


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
    """Rounds in which the simulator and load generator together nearly filled their core."""
    notes = []
    for label, results in runs.items():
        for index, run in enumerate(results, 1):
            cpu = run.get("cpu_percent", {})
            load_side = cpu.get("loadgen", 0.0) + cpu.get("simulator", 0.0)
            if load_side > BUSY_CORE:
                notes.append(
                    f"{label}, round {index}: simulator + load generator used {load_side:.0f}%"
                    " of their core; the load side may have held this round back"
                )
    return notes


def shared_core_note(runs: Runs, pinning: Pinning) -> str | None:
    """How much of corral's core other processes (not the benchmark's) took in the rounds of each
    corral (the default one and (a)'s variants), where that was enough to matter."""
    if not pinning.enabled:
        return None
    shares = {label: _foreign_share(results) for label, results in runs.items()}
    busy = {
        label: share
        for label, share in shares.items()
        # nginx's own CPU time counts as foreign here; share >= ... is False when NaN
        if label not in ("direct", REFERENCE) and share >= FOREIGN_LOAD
    }
    if not busy:
        return None
    if list(busy) == ["corral"]:
        amount = f"{busy['corral']:.0f}%"
    else:
        amount = ", ".join(f"{share:.0f}% ({label})" for label, share in busy.items())
    return (
        f"other processes used {amount} of corral's core during its rounds: corral's rates"
        " and latencies here are pessimistic (its CPU figures count its own time only)"
    )


def _foreign_share(results: list[Run]) -> float:
    """The median share of corral's core that processes other than the watched corral took."""
    core = f"core{CORRAL_CORE}"
    shares = []
    for run in results:
        cpu = run.get("cpu_percent", {})
        if core in cpu and "corral" in cpu:
            shares.append(cpu[core] - cpu["corral"])
    return median(shares)


def gc_note(corral: Service) -> str | None:
    gc = corral.exit_stats.get("gc")
    if not gc:
        return None
    passes = gc["collections"][2]
    plural = "" if passes == 1 else "s"
    return (
        f"corral's longest garbage-collector pause: {max(gc['longest_ms']):.1f} ms"
        f" ({passes} full collection{plural})"
    )


def observe(result: ScenarioResult, bench: Bench, corral: Service) -> None:
    """What went wrong under load, and what the machine and corral's collector did meanwhile."""
    result.problems += problems_in(result.runs)
    notes = (shared_core_note(result.runs, bench.pinning), gc_note(corral))
    result.notes += [note for note in notes if note is not None]
    result.corral_process = corral.exit_stats
