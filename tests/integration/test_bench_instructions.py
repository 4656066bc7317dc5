"""``python -m bench.instructions`` counts corral's instructions per request in each mode of one
process: a few requests under callgrind check the machinery and that the modes really switch
(limits on costs more than the default, recording off less), not the figures themselves."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 300


@pytest.mark.timeout(RUN_TIMEOUT + 20)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_each_mode_is_counted_in_the_same_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--requests", "160"],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    counts = {
        name: int(count.replace(",", ""))
        for name, count in re.findall(r"^\| ([^|]+?) \| ([\d,]+) \|", done.stdout, re.MULTILINE)
    }
    default = counts["default (recording on, limits off)"]
    assert 50_000 < default < 5_000_000, done.stdout
    assert counts["limits on (memory); baseline: limits off"] > default + 5_000, done.stdout
    assert counts["recording off"] < default - 5_000, done.stdout
