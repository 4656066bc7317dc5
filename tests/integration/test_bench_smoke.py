"""The benchmark still runs: a tiny, unpinned ``python -m bench --smoke`` measures every scenario.

It checks the machinery (processes, readiness, load clients, report), not the figures: numbers
from a few requests on a shared CI machine mean nothing. A benchmark that breaks, or a corral
that answers the benchmark's load with errors, fails here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.reference import nginx_path

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 100


def run_bench(output: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench", "--smoke", "--output", str(output), *args]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        env={**os.environ, **(env or {})},
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


def reference_rows(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in scenario["rows"] if "nginx" in row["metric"].split(",")[0]]


@pytest.mark.timeout(RUN_TIMEOUT + 20)
@pytest.mark.skipif(nginx_path() is None, reason="nginx is not installed (apt-get install nginx)")
def test_nginx_is_measured_in_the_same_rounds_as_corral(tmp_path: Path) -> None:
    results = run_bench(tmp_path / "results.json", "--scenario", "a,b,c", "--reference")

    for key in ("a", "b", "c"):
        scenario = results["scenarios"][key]
        assert_measured(scenario)
        rows = reference_rows(scenario)
        assert len(rows) >= 2, scenario["rows"]
        runs = scenario["runs"]
        assert len(runs["nginx"]) == len(runs["corral"]) == len(runs["direct"])
        # nginx's own process was watched in its rounds (a smoke run is too short for its CPU
        # time to say more than that).
        for run in runs["nginx"]:
            assert "nginx" in run["cpu_percent"], run
    assert results["problems"] == []


BROKEN_NGINX = "#!/bin/sh\necho 'nginx: [emerg] unknown directive' >&2\nexit 1\n"


@pytest.mark.timeout(RUN_TIMEOUT + 20)
@pytest.mark.parametrize(
    ("binary", "reason"),
    [
        (None, "nginx is not installed"),
        (BROKEN_NGINX, "nginx exited with status 1 before it was ready: nginx: [emerg] unknown"),
    ],
    ids=["missing", "broken"],
)
def test_without_a_working_nginx_its_rows_say_why(
    tmp_path: Path, binary: str | None, reason: str
) -> None:
    nginx = tmp_path / "nginx"
    if binary is not None:
        nginx.write_text(binary)
        nginx.chmod(0o755)
    results = run_bench(
        tmp_path / "results.json", "--scenario", "b", "--reference", env={"BENCH_NGINX": str(nginx)}
    )

    scenario = results["scenarios"]["b"]
    rows = reference_rows(scenario)
    assert rows and all(row["unmeasured"].startswith(reason) for row in rows), rows
    assert "nginx" not in scenario["runs"]
    assert all(row["unmeasured"] is None for row in scenario["rows"] if row not in rows)
