"""Load for scenario (a): wrk POSTing one ``/api/chat`` body over keep-alive connections.

wrk's Lua ``done`` hook prints one line of JSON (requests, duration, errors by kind, latency
percentiles) after a marker, so nothing depends on the layout of wrk's human report. One wrk
thread: it shares its core with the simulator, and a second thread would only fight it.

Example::

    result = run_wrk(8080, body, connections=64, duration=5.0, cpus=frozenset({1}))
    result["responses_per_s"]
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import run_tool

MARKER = "BENCH-RESULT "
# The body goes into a Lua long string: no escaping to get wrong.
SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
# Beyond the run itself: wrk's start-up and its wait for the last answers.
EXTRA_TIMEOUT = 30.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


class WrkFailed(RuntimeError):
    pass


def run_wrk(
    port: int,
    body: str,
    *,
    connections: int,
    duration: float,
    cpus: frozenset[int] | None,
    path: str = "/api/chat",
) -> dict[str, Any]:
    """Run wrk against 127.0.0.1:``port`` and return the same keys as the loop load generator."""
    binary = wrk_path()
    if binary is None:
        raise WrkFailed("wrk is not installed")
    with tempfile.TemporaryDirectory(prefix="corral-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(SCRIPT.format(body=body, marker=MARKER))
        argv = [
            binary, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
            "-s", str(script), f"http://127.0.0.1:{port}{path}",
        ]  # fmt: skip
        done = run_tool("wrk", argv, cpus, timeout=duration + EXTRA_TIMEOUT)
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkFailed(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    seconds = raw["duration_us"] / 1e6
    broken = {
        f"{kind} errors": raw[kind] for kind in ("connect", "read", "write", "timeout") if raw[kind]
    }
    return {
        "connections": connections,
        "window_s": round(seconds, 3),
        "responses": raw["requests"],
        "responses_per_s": round(raw["requests"] / seconds, 2) if seconds else 0.0,
        "latency_ms": {"p50": raw["p50_us"] / 1000, "p99": raw["p99_us"] / 1000},
        # wrk counts answers outside 2xx/3xx but not their codes.
        "statuses": {"non-2xx/3xx": raw["status"]} if raw["status"] else {},
        "broken": broken,
    }
