"""`make run` as a newcomer meets it: `corral dev` with no Ollama around serves a simulator."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on {port} within {deadline}s")


def test_dev_falls_back_to_the_simulator_and_the_readme_examples_work() -> None:
    port, nobody = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "dev", "--port", str(port), "-b", f"127.0.0.1:{nobody}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        tags = httpx.get(f"{base}/api/tags", timeout=10).json()
        assert "llama3.2:latest" in [m["name"] for m in tags["models"]]
        chat = httpx.post(
            f"{base}/api/chat",
            json={"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}], "stream": False},
            timeout=30,
        )
        assert chat.status_code == 200 and chat.json()["message"]["content"]
        v1 = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}]},
            timeout=30,
        )
        assert v1.status_code == 200 and v1.json()["choices"][0]["message"]["content"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"started the bundled Ollama simulator" in stderr


def test_serve_with_a_bad_setting_exits_2_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral", "serve"],
        env={"CORRAL_PORT": "eighty", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"CORRAL_PORT" in result.stderr


def generated_tokens(extra_args: list[str], num_predict: int) -> tuple[int, str]:
    """``eval_count`` and ``done_reason`` of one answer from ``corral simulate``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "simulate", "--port", str(port), "--tokens-per-second",
         "5000", *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port(port, proc)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/generate",
            json={"model": "llama3.2", "prompt": "Hi", "stream": False,
                  "options": {"num_predict": num_predict}},
            timeout=30,
        ).json()  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    return answer["eval_count"], answer["done_reason"]


def test_simulate_caps_answers_at_num_predict_unless_asked_for_exact_lengths() -> None:
    # As a real model: a limit above the answer's natural length changes nothing...
    assert generated_tokens([], 200) == (24, "stop")
    assert generated_tokens([], 5) == (5, "length")
    # ...and for load tests, the limit is the length.
    assert generated_tokens(["--exact-lengths"], 200) == (200, "length")
