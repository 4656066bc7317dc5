"""corral's open-file limit is raised to the hard limit, and its descriptor table grown at once.

Each check runs in a child process: a limit once raised, or a table once grown, stays so for the
process's life.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs Linux's /proc"
)

CHILD = """
import os, resource
from corral.descriptors import raise_open_file_limit, reserve_descriptor_table

def table():
    for line in open("/proc/self/status"):
        if line.startswith("FDSize:"):
            return int(line.split()[1])

open_before = len(os.listdir("/proc/self/fd"))
before = table()
raised = raise_open_file_limit()
reserve_descriptor_table(4096)
print(before, table(), raised, resource.getrlimit(resource.RLIMIT_NOFILE)[0],
      len(os.listdir("/proc/self/fd")) - open_before)
"""


def run_child(soft_limit: int | None = None) -> list[int]:
    def lower_soft_limit() -> None:
        if soft_limit is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, hard))

    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lower_soft_limit,
        timeout=60,
    )
    return [int(word) for word in done.stdout.split()]


def test_the_table_is_grown_once_and_nothing_is_left_open() -> None:
    before, after, _, soft, left_open = run_child()
    assert before < 4096 <= after or soft < 4096
    assert left_open == 0


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1024 or hard == resource.RLIM_INFINITY:
        pytest.skip(f"this machine's hard limit ({hard}) leaves nothing to raise")
    _, _, raised, soft, _ = run_child(soft_limit=512)
    assert raised == soft == hard
