"""What limits and recording cost corral per request, in machine instructions.

    python -m bench.instructions                  # 3,000 requests in each mode
    python -m bench.instructions --requests 500   # quicker, a little less exact
    python -m bench --scenario i                  # the same, as rows of the benchmark's table

Scenario (a)'s rows for these costs compare requests per second, which on a shared two-core
machine move by more than the costs themselves between rounds seconds apart. An instruction count
does not: valgrind's callgrind counts what corral's process executes, whatever else the machine
is doing. corral runs under callgrind (counting off until measured) in front of the simulator, and
a fixed number of scenario (a)'s non-streaming ``/api/chat`` requests, over 16 keep-alive
connections, is counted in each mode of the same process, switched by the signals of
``bench/run_corral.py``: the default (recording on, limits off), limits on (a request limit and a
token budget per client address, in memory), recording off, and the default again. A mode's
ratio is the default's instructions per request over its own: the throughput it would keep if
time followed instructions; the target for limits and for recording is at least x0.90.

The count includes what runs on timers (the access log and usage writer flush every second),
which callgrind's slowness makes a little larger per request: compare modes of one run, not
figures of different runs. Without valgrind on the machine, nothing is measured and it says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.procs import (
    CORRAL_ENV,
    SWITCH_LIMITS,
    SWITCH_RECORDING,
    Service,
    ServiceFailed,
    free_port,
    launch,
    start_simulator,
    switched,
)
from bench.report import GE, TIMES, Row, ScenarioResult
from bench.rounds import Bench, chat_body

CONNECTIONS = 16
WARM_UP_REQUESTS = 800
# Under callgrind corral runs some 50 times slower, its start-up included.
READY_TIMEOUT = 180.0
TARGET = 0.90
# Per mode, when the profile counts none (a smoke run that asks for (i) by name): enough to check
# the machinery and that the modes switch.
FEW_REQUESTS = 1000


async def _one_connection(port: int, request: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, _, rest = head.partition(b"\r\n")
            if b" 200 " not in status_line:
                raise ServiceFailed(f"corral answered {status_line.decode(errors='replace')}")
            length = 0
            for line in rest.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
    finally:
        writer.close()


def send(port: int, count: int) -> None:
    """``count`` of scenario (a)'s requests over :data:`CONNECTIONS` keep-alive connections."""
    body = chat_body(16, stream=False).encode()
    request = (
        b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )

    async def run() -> None:
        each = count // CONNECTIONS
        await asyncio.gather(*[_one_connection(port, request, each) for _ in range(CONNECTIONS)])

    asyncio.run(run())


class Counted:
    """corral under callgrind, and a way to count the instructions of some requests."""

    def __init__(self, service: Service, out_dir: Path) -> None:
        self.service = service
        self.out_dir = out_dir
        self._dumps = 0

    def _control(self, *args: str) -> None:
        done = subprocess.run(
            ["callgrind_control", *args, str(self.service.pid)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise ServiceFailed(f"callgrind_control {' '.join(args)} failed ({done.returncode})")

    def per_request(self, requests: int) -> float:
        """Instructions corral executes per request, over ``requests`` requests."""
        send(self.service.port, WARM_UP_REQUESTS)
        requests -= requests % CONNECTIONS
        self._control("--zero")
        self._control("--instr=on")
        send(self.service.port, requests)
        self._control("--instr=off")
        self._control("--dump")
        self._dumps += 1
        return self._totals(self._dumps) / requests

    def _totals(self, part: int) -> int:
        path = self.out_dir / f"callgrind.out.{part}"
        deadline = time.monotonic() + 60.0
        while True:
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    if line.startswith("totals:"):
                        return int(line.split()[1])
            if time.monotonic() > deadline:
                raise ServiceFailed(f"callgrind wrote no totals to {path}")
            time.sleep(0.1)


@contextlib.contextmanager
def counted_corral(backend_url: str, out_dir: Path) -> Iterator[Counted]:
    port = free_port()
    modes_file = out_dir / "modes.json"
    argv = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={out_dir / 'callgrind.out'}",
        sys.executable, "-m", "bench.run_corral", "--port", str(port), "--backend", backend_url,
        "--modes-file", str(modes_file),
    ]  # fmt: skip
    service = launch("corral (callgrind)", argv, port, None, env=CORRAL_ENV)
    service.modes_file = modes_file
    try:
        service.wait_ready("/api/version", timeout=READY_TIMEOUT)
        yield Counted(service, out_dir)
    finally:
        service.stop()


MODES = ("default", "limits on (memory)", "recording off", "default, again")


def measure(requests: int) -> dict[str, float]:
    """Instructions per request in each of :data:`MODES`, counted in that order."""
    simulator = start_simulator(1e9, 0, None)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="corral-bench-callgrind-") as out,
            counted_corral(simulator.url, Path(out)) as corral,
        ):
            figures = {"default": corral.per_request(requests)}
            with switched(corral.service, SWITCH_LIMITS, "limits"):
                figures["limits on (memory)"] = corral.per_request(requests)
            with switched(corral.service, SWITCH_RECORDING, "recording"):
                figures["recording off"] = corral.per_request(requests)
            figures["default, again"] = corral.per_request(requests)
            return figures
    finally:
        simulator.stop()


def rows(figures: dict[str, float]) -> list[Row]:
    """The rows of these counts: each mode against its baseline, as the throughput it keeps if
    time follows instructions (the baseline's count over the mode's)."""
    default = (figures["default"] + figures["default, again"]) / 2
    limits, recording_off = figures["limits on (memory)"], figures["recording off"]
    target = f"{GE} {TIMES}{TARGET:.2f}"
    found = [
        Row("(i) instructions per request, default corral", "instr", None, default, "absolute"),
        Row(
            "(i) instructions per request, limits on (memory); baseline: limits off", "instr",
            default, limits, "ratio", default / limits, target,
        ),
        Row(
            "(i) instructions per request, recording on; baseline: recording off", "instr",
            recording_off, default, "ratio", recording_off / default, target,
        ),
    ]  # fmt: skip
    for row in found[1:]:
        row.passed = row.change is not None and row.change >= TARGET
    return found


def instruction_costs(bench: Bench) -> ScenarioResult:
    """Scenario (i) of ``python -m bench``."""
    result = ScenarioResult("i", "instructions per request, by callgrind")
    requests = bench.profile.i_requests or FEW_REQUESTS
    result.setup = {"requests_per_mode": requests, "connections": CONNECTIONS}
    missing = _missing_tools()
    if missing:
        reason = f"{', '.join(missing)} not found"
        result.rows = [
            Row(row.metric, "instr", None, None, row.compare, unmeasured=reason)
            for row in rows(dict.fromkeys(MODES, 1.0))
        ]
        return result
    figures = measure(requests)
    result.rows = rows(figures)
    result.runs = {"callgrind": [figures]}
    default, again = figures["default"], figures["default, again"]
    result.notes.append(
        "ratios: the baseline's instructions per request over the mode's, counted for"
        f" {requests:,} requests in each mode of one corral process; the default, counted first"
        f" and last, differed by {abs(default - again) / default:.1%}"
    )
    return result


def _missing_tools() -> list[str]:
    return [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per mode (default 3000)")
    args = parser.parse_args(argv)
    missing = _missing_tools()
    if missing:
        print(f"not measured: {', '.join(missing)} not found (Debian: apt-get install valgrind)")
        return
    figures = measure(max(args.requests, CONNECTIONS))
    for mode, count in figures.items():
        print(f"{mode:>20}: {count:,.0f} instructions per request")
    for row in rows(figures)[1:]:
        verdict = "pass" if row.passed else "FAIL"
        print(f"{row.metric}: {TIMES}{row.change:.3f} (target {row.target}): {verdict}")


if __name__ == "__main__":
    main()
