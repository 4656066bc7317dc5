"""What a benchmark run found: rows per scenario, printed as a markdown table and saved as JSON.

A row compares corral with the direct connection as a ratio (throughput) or as what corral adds
(latency), or states one of corral's own figures (CPU, memory) against its target. A row with a
baseline compares two corrals (limits on against off): its direct column is the baseline corral.

Example::

    row = Row("(a) req/s", "req/s", direct=20_000, corral=15_000, compare="ratio", change=0.75)
    print(render_markdown(Report(...)))
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Compare = Literal["ratio", "added", "absolute"]
TIMES = "\u00d7"
MINUS = "\u2212"
MICRO = "\u00b5"
GE = "\u2265"
LE = "\u2264"
# Rounds whose largest figure is this many times their smallest disagree: the machine was busy.
SPREAD = 2.0


@dataclass(slots=True)
class Row:
    metric: str
    unit: str
    direct: float | None
    corral: float | None
    compare: Compare
    change: float | None = None
    """corral / direct for ``ratio``, corral - direct for ``added``."""
    target: str = ""
    passed: bool | None = None
    direct_rounds: list[float] = field(default_factory=list)
    corral_rounds: list[float] = field(default_factory=list)
    unmeasured: str | None = None
    """Why this row has no figures, when what it needs is missing (a Redis that is not running)."""

    def spread_note(self) -> str | None:
        """A warning when this row's rounds disagree by more than ``SPREAD`` times."""
        parts = []
        for label, rounds in (("direct", self.direct_rounds), ("corral", self.corral_rounds)):
            finite = [v for v in rounds if math.isfinite(v)]
            if len(finite) >= 2 and min(finite) > 0 and max(finite) / min(finite) > SPREAD:
                low, high = _number(min(finite), self.unit), _number(max(finite), self.unit)
                parts.append(f"{label} {low} to {high}")
        if not parts:
            return None
        return f"{self.metric}: rounds disagree ({'; '.join(parts)}); the machine was busy"


@dataclass(slots=True)
class ScenarioResult:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """Errors under load: non-2xx answers, broken streams, a process that died."""
    notes: list[str] = field(default_factory=list)
    corral_process: dict[str, Any] = field(default_factory=dict)
    """What corral reported as it stopped (its garbage collector's pauses)."""
    error: str | None = None
    """Set when the scenario could not be measured at all."""


@dataclass(slots=True)
class Report:
    profile: str
    started: str
    seconds: float
    pinning: str
    load_client: str
    scenarios: list[ScenarioResult]

    @property
    def problems(self) -> list[str]:
        found = []
        for scenario in self.scenarios:
            if scenario.error is not None:
                found.append(f"({scenario.key}) not measured: {scenario.error}")
            found += [f"({scenario.key}) {problem}" for problem in scenario.problems]
        return found


def _number(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if unit in ("req/s", "chunks/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "us":
        return f"{value:.1f} {MICRO}s"
    if unit == "instr":
        return f"{value:,.0f}"
    return f"{value:g} {unit}"


def _change(row: Row) -> str:
    value = row.change
    if value is None or not math.isfinite(value):
        return "—"
    if row.compare == "ratio":
        return f"{TIMES}{value:.2f}"
    if row.compare == "added":
        sign = "+" if value >= 0 else MINUS
        return f"{sign}{_number(abs(value), row.unit)}"
    return "—"


def _verdict(passed: bool | None) -> str:
    return "—" if passed is None else ("pass" if passed else "FAIL")


def render_markdown(report: Report) -> str:
    lines = [
        f"corral benchmark ({report.profile}, {report.seconds:.0f} s): {report.pinning}",
        "",
        "| Scenario | direct | corral | ratio / added | target | pass |",
        "|---|---:|---:|---:|---|---|",
    ]
    for scenario in report.scenarios:
        if scenario.error is not None:
            lines.append(f"| ({scenario.key}) {scenario.title} | not measured | | | | FAIL |")
            continue
        for row in scenario.rows:
            if row.unmeasured is not None:
                lines.append(f"| {row.metric} | not measured ({row.unmeasured}) | | | | — |")
                continue
            lines.append(
                f"| {row.metric} | {_number(row.direct, row.unit)} | "
                f"{_number(row.corral, row.unit)} | {_change(row)} | {row.target or '—'} | "
                f"{_verdict(row.passed)} |"
            )
    lines += ["", f"Load client for (a): {report.load_client}."]
    lines.append(
        "corral runs with its access log on (one JSON line per request, written to /dev/null)."
    )
    for scenario in report.scenarios:
        lines += [f"({scenario.key}) {note}" for note in scenario.notes]
        spread = (row.spread_note() for row in scenario.rows)
        lines += [note for note in spread if note is not None]
    problems = report.problems
    if problems:
        lines += ["", "Problems under load:"]
        lines += ["- " + problem.replace("\n", "\n  ") for problem in problems]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def to_json(report: Report) -> dict[str, Any]:
    document: dict[str, Any] = _finite(
        {
            "profile": report.profile,
            "started": report.started,
            "seconds": round(report.seconds, 1),
            "pinning": report.pinning,
            "load_client": report.load_client,
            "access_log": "on, written to /dev/null",
            "scenarios": {s.key: asdict(s) for s in report.scenarios},
            "problems": report.problems,
        }
    )
    return document


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(report), indent=2) + "\n")
