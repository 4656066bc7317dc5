"""Scenario (i) of the benchmark counts corral's instructions per request in each mode of one
process: a few requests under callgrind check the machinery and that the modes really switch
(limits on costs more than the default, recording off less), not the figures themselves."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 300


@pytest.mark.timeout(RUN_TIMEOUT + 20)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_each_mode_is_counted_in_the_same_process(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    argv = [sys.executable, "-m", "bench", "--smoke", "--scenario", "i", "--output", str(output)]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    scenario = json.loads(output.read_text())["scenarios"]["i"]
    assert scenario["error"] is None, scenario["error"]
    (figures,) = scenario["runs"]["callgrind"]
    default, again = figures["default"], figures["default, again"]
    assert 50_000 < default < 5_000_000, figures
    # Each mode's cost is several times the spread of the default's two counts.
    assert figures["limits on (memory)"] > max(default, again), figures
    assert figures["recording off"] < min(default, again), figures
    limits_row = scenario["rows"][1]
    assert limits_row["change"] == pytest.approx(
        (default + again) / 2 / figures["limits on (memory)"]
    )
