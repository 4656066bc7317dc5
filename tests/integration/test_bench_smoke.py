"""The benchmark still runs: a tiny, unpinned ``python -m bench --smoke`` measures every scenario.

It checks the machinery (processes, readiness, load clients, report), not the figures: numbers
from a few requests on a shared CI machine mean nothing. A benchmark that breaks, or a corral
that answers the benchmark's load with errors, fails here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 100


def run_bench(output: Path, *args: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench", "--smoke", "--output", str(output), *args]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"benchmark failed:\n{done.stdout}\n{done.stderr}"
    results: dict[str, Any] = json.loads(output.read_text())
    return results


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def assert_measured(scenario: dict[str, Any]) -> None:
    assert scenario["error"] is None, scenario["error"]
    assert scenario["rows"], "no figures"
    for row in scenario["rows"]:
        assert is_number(row["corral"]), row
        if row["compare"] != "absolute":
            assert is_number(row["direct"]), row
            assert is_number(row["change"]), row


@pytest.mark.timeout(RUN_TIMEOUT + 20)
def test_smoke_run_measures_every_scenario_direct_and_through_corral(tmp_path: Path) -> None:
    results = run_bench(tmp_path / "results.json")

    assert set(results["scenarios"]) == {"a", "b", "c", "d"}
    for scenario in results["scenarios"].values():
        assert_measured(scenario)
    assert results["problems"] == []
    assert results["access_log"].startswith("on")


@pytest.mark.timeout(RUN_TIMEOUT + 20)
def test_requests_per_second_falls_back_to_the_python_client(tmp_path: Path) -> None:
    results = run_bench(tmp_path / "results.json", "--scenario", "a", "--no-wrk")

    assert list(results["scenarios"]) == ["a"]
    assert_measured(results["scenarios"]["a"])
    assert "Python client" in results["load_client"]
