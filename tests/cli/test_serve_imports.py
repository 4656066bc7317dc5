"""What a serving process holds in memory: `corral serve` imports what serving needs, not the
other commands, the interactive shell, the simulator, or the metrics exposition (until scraped)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

# Runs `corral serve` in its own process; once it listens, prints every module it imported and
# stops it the way an operator would (SIGTERM).
SERVE_AND_REPORT = """
import os, signal, socket, sys, threading, time
from corral.cli.main import main

def report_when_listening(port):
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    print("\\n".join(sorted(sys.modules)), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report_when_listening, args=(int(sys.argv[1]),), daemon=True).start()
main(["serve", "--port", sys.argv[1], "-b", sys.argv[2]], standalone_mode=False)
"""

NOT_FOR_SERVING = (
    "corral.cli.admin_client",
    "corral.cli.backends",
    "corral.cli.cache",
    "corral.cli.keys",
    "corral.cli.shell",
    "corral.cli.usage",
    "corral.cli.webhooks",
    "corral.testing",
    "corral.observability.exposition",
    "prometheus_client",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serving_process_imports_neither_other_commands_nor_simulator_nor_exposition(
    tmp_path: Path,
) -> None:
    port, nobody = free_port(), free_port()
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, str(port), f"127.0.0.1:{nobody}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # its SQLite file goes to ./data here
        timeout=60,
    )
    loaded = set(done.stdout.split())
    assert "corral.app" in loaded, done.stderr
    assert sorted(m for m in loaded if m.startswith(NOT_FOR_SERVING)) == []
