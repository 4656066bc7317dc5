"""The processes of a benchmark run: simulator, corral and load tools, each pinned to its core.

corral gets core 0 to itself; the simulator, the load generator (and this orchestrating process,
which mostly sleeps) share core 1. A server counts as started once it answers an HTTP request:
readiness is polled, never assumed after a fixed sleep.

Example::

    pinning = Pinning.choose(requested=True)
    sim = start_simulator(tokens_per_second=20, first_token_ms=0, cpus=pinning.load)
    corral = start_corral(sim.url, cpus=pinning.corral)
    ...
    corral.stop()
    sim.stop()
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CORRAL_CORE = 0
LOAD_CORE = 1
MODEL = "llama3.2"
# The label of the reference proxy (bench/reference.py) in a scenario's rounds.
REFERENCE = "nginx"
READY_TIMEOUT = 30.0
READY_POLL_INTERVAL = 0.05
STOP_TIMEOUT = 15.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# What bench/run_corral.py reads, at corral's defaults: a BENCH_LIMITS or BENCH_RECORDING left in
# the shell does not change what "corral" means in any scenario. A variant overrides one of them.
CORRAL_ENV = {"BENCH_LIMITS": "off", "BENCH_RECORDING": "on"}
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None


class ServiceFailed(RuntimeError):
    """A process of the benchmark did not start, or died."""


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which cores corral and the load side run on; ``None`` means wherever the kernel likes."""

    corral: frozenset[int] | None
    load: frozenset[int] | None
    note: str

    @property
    def enabled(self) -> bool:
        return self.corral is not None

    @classmethod
    def choose(cls, *, requested: bool) -> Pinning:
        if not requested:
            return cls(None, None, "not pinned (asked not to)")
        if not hasattr(os, "sched_getaffinity"):
            return cls(None, None, "not pinned (this platform cannot set CPU affinity)")
        available = os.sched_getaffinity(0)
        if not {CORRAL_CORE, LOAD_CORE} <= available:
            return cls(None, None, f"not pinned (needs cores 0 and 1; have {sorted(available)})")
        return cls(
            frozenset({CORRAL_CORE}),
            frozenset({LOAD_CORE}),
            f"corral on core {CORRAL_CORE}; simulator and load generator on core {LOAD_CORE}",
        )


def pin_self(cpus: frozenset[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    """A ``preexec_fn``: the child dies with this process (a benchmark killed by a timeout must
    not leave a corral behind) and runs on ``cpus`` from before exec, so all its threads do."""

    def setup() -> None:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return setup


def redis_url() -> str:
    """The Redis that corral with ``BENCH_LIMITS=redis`` keeps its limits in: ``BENCH_REDIS_URL``,
    else a local one."""
    return os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(port: int, path: str, timeout: float = 1.0) -> int:
    """Status of ``GET path`` on 127.0.0.1:``port``; raises ``OSError`` if nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except http.client.HTTPException as err:
        raise OSError(str(err)) from err
    finally:
        conn.close()


class Service:
    """A server process this run started: where it listens, and how to stop it."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        port: int,
        log: Path,
        stats_file: Path | None = None,
    ) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.log = log
        self.stats_file = stats_file
        self.exit_stats: dict[str, Any] = {}
        """What the process wrote to ``stats_file`` as it stopped."""
        self.modes_file: Path | None = None
        """Where a corral writes the modes in force (``bench.run_corral.Modes``)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, path: str, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``GET path`` until it answers 200; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            code = self.process.poll()
            if code is not None:
                output = self.output_tail()
                self.stop()
                raise ServiceFailed(
                    f"{self.name} exited with status {code} before it was ready:\n{output}"
                )
            try:
                status = http_status(self.port, path)
            except OSError as err:
                last = str(err) or type(err).__name__
            else:
                if status == 200:
                    return
                last = f"status {status}"
            if time.monotonic() > deadline:
                output = self.output_tail()
                self.stop()
                raise ServiceFailed(
                    f"{self.name} did not answer GET {path} with 200 within {timeout:g}s"
                    f" ({last}):\n{output}"
                )
            time.sleep(READY_POLL_INTERVAL)

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ServiceFailed(f"{self.name} died (status {code}):\n{self.output_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.stats_file is not None:
            with contextlib.suppress(OSError, ValueError):
                self.exit_stats = json.loads(self.stats_file.read_text())
            self.stats_file.unlink(missing_ok=True)
        if self.modes_file is not None:
            self.modes_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.log.unlink()


def launch(
    name: str,
    argv: Sequence[str],
    port: int,
    cpus: frozenset[int] | None,
    stats_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Service:
    """Start ``argv`` on ``cpus``, output to a temporary log; ``env`` adds to this environment."""
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - handed to the child, closed below
        prefix=f"corral-bench-{name}-", suffix=".log", delete=False
    )
    with log_file:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=None if env is None else {**os.environ, **env},
            preexec_fn=_child_setup(cpus),
        )
    return Service(name, process, port, Path(log_file.name), stats_file)


def start_simulator(
    tokens_per_second: float, first_token_ms: float, cpus: frozenset[int] | None
) -> Service:
    """The simulator (``bench/run_simulator.py``) with one model, ready to answer."""
    port = free_port()
    argv = [
        sys.executable, "-m", "bench.run_simulator", "--port", str(port), "--models", MODEL,
        "--tokens-per-second", repr(float(tokens_per_second)),
        "--first-token-ms", repr(float(first_token_ms)),
    ]  # fmt: skip
    service = launch("simulator", argv, port, cpus)
    service.wait_ready("/api/version")
    return service


def start_corral(
    backend_url: str,
    cpus: frozenset[int] | None,
    env: Mapping[str, str] | None = None,
    name: str = "corral",
) -> Service:
    """corral in front of ``backend_url``, ready once a request through it reaches the backend.

    It runs with :data:`CORRAL_ENV` updated by ``env``: ``{"BENCH_LIMITS": "memory"}`` is corral
    with limits on, everything else as by default.
    """
    port = free_port()
    stats_file = Path(tempfile.gettempdir()) / f"corral-bench-stats-{port}.json"
    modes_file = Path(tempfile.gettempdir()) / f"corral-bench-modes-{port}.json"
    argv = [
        sys.executable, "-m", "bench.run_corral", "--port", str(port), "--backend", backend_url,
        "--stats-file", str(stats_file), "--modes-file", str(modes_file),
    ]  # fmt: skip
    service = launch(name, argv, port, cpus, stats_file, {**CORRAL_ENV, **(env or {})})
    service.modes_file = modes_file
    service.wait_ready("/api/version")
    return service


# Signals that switch a running corral between two settings (``bench.run_corral.Modes``), so that
# the benchmark compares them in one process: two processes of the same code differ here by more
# than the costs measured (heap layout, which caches they find warm...).
SWITCH_RECORDING = signal.SIGUSR1
SWITCH_LIMITS = signal.SIGUSR2


class Switched(Service):
    """A running corral with one of its modes switched while it is measured: a variant that
    needs no process of its own. It shares the corral's process, which it never stops."""

    def __init__(self, name: str, corral: Service, signal_number: int, mode: str) -> None:
        super().__init__(name, corral.process, corral.port, corral.log)
        self.corral = corral
        self.signal_number = signal_number
        self.mode = mode

    def switched(self) -> contextlib.AbstractContextManager[None]:
        return switched(self.corral, self.signal_number, self.mode)

    def stop(self) -> None:
        """The process is the corral's: it stops with it."""


@contextlib.contextmanager
def switched(corral: Service, signal_number: int, mode: str) -> Iterator[None]:
    """``corral`` with one of its modes switched (``bench.run_corral.Modes``) while inside, and
    back after; each switch is seen through the modes file before going on."""
    assert corral.modes_file is not None
    before = json.loads(corral.modes_file.read_text())
    os.kill(corral.pid, signal_number)
    _wait_for_mode(corral, mode, not before[mode])
    try:
        yield
    finally:
        os.kill(corral.pid, signal_number)
        _wait_for_mode(corral, mode, before[mode])


def _wait_for_mode(corral: Service, mode: str, value: bool) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    assert corral.modes_file is not None
    while True:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(corral.modes_file.read_text())[mode] == value:
                return
        corral.check_alive()
        if time.monotonic() > deadline:
            raise ServiceFailed(f"{corral.name} did not switch {mode} to {value}")
        time.sleep(READY_POLL_INTERVAL)


def run_tool(
    name: str, argv: Sequence[str], cpus: frozenset[int] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a load tool to completion on ``cpus`` and capture its output."""
    try:
        return subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
            preexec_fn=_child_setup(cpus),
        )
    except subprocess.TimeoutExpired as err:
        raise ServiceFailed(f"{name} did not finish within {timeout:g}s") from err
