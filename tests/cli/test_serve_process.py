"""`corral serve` as a process: it re-reads its settings on SIGHUP, as /admin/reload does, and
says what it did; it starts with room for many connections."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest

from corral.descriptors import RESERVED
from tests.cli.test_dev_command import free_port, wait_for_port

DEADLINE = 30.0


class LogLines:
    """The JSON log lines a process writes to standard error, read as they come."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._lines: Queue[dict[str, Any]] = Queue()
        assert proc.stderr is not None
        stream = proc.stderr
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:
                continue

    def wait_for(self, message: str) -> dict[str, Any]:
        end = time.monotonic() + DEADLINE
        while (left := end - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except Empty:
                break
            if line.get("message", "").startswith(message):
                return line
        raise AssertionError(f"no log line {message!r} within {DEADLINE}s")


Serving = tuple[subprocess.Popen[bytes], Path, LogLines]


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    config = tmp_path / "corral.toml"
    port = free_port()
    config.write_text(
        f'port = {port}\nstrategy = "round_robin"\ndata_dir = "{tmp_path}"\n'
        f'[[backends]]\nurl = "http://127.0.0.1:{free_port()}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    try:
        logs = LogLines(proc)
        wait_for_port(port, proc)
        logs.wait_for("corral listening")
        yield proc, config, logs
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def hang_up_with_strategy(serving: Serving, strategy: str, logged: str) -> dict[str, Any]:
    """Change the strategy in the settings file, send SIGHUP; the log line that follows."""
    proc, config, logs = serving
    config.write_text(config.read_text().replace("round_robin", strategy))
    proc.send_signal(signal.SIGHUP)
    return logs.wait_for(logged)


def test_sighup_applies_the_changed_settings_and_logs_them(serving: Serving) -> None:
    line = hang_up_with_strategy(serving, "least_busy", "settings reloaded")

    assert line["applied"] == ["strategy"]
    assert line["restart_required"] == []


def test_sighup_with_a_bad_setting_changes_nothing_and_says_why(serving: Serving) -> None:
    line = hang_up_with_strategy(serving, "fastest", "reload refused, settings unchanged")

    assert line["level"] == "error"
    assert "strategy (corral.toml): must be one of" in line["message"]
    assert serving[0].poll() is None


def descriptor_table_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("FDSize:"):
            return int(line.split()[1])
    raise AssertionError("no FDSize in /proc status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_serve_grows_its_descriptor_table_before_serving(serving: Serving) -> None:
    proc, _, _ = serving
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    # Room for RESERVED descriptors (or as many as the limit allows), though few are open.
    assert descriptor_table_size(proc.pid) >= min(RESERVED, soft)
    assert len(list(Path(f"/proc/{proc.pid}/fd").iterdir())) < 100
