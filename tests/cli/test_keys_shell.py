"""`corral shell` driven for real: a pseudo-terminal, keystrokes, Tab and the arrow keys."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

PROMPT = "corral>"
# prompt_toolkit redraws the prompt while a line is edited; a new prompt is the one that starts
# by turning bracketed paste on again.
NEW_PROMPT = r"\x1b\[\?2004h[^\n]*?corral>"
KEY = r"corral_[A-Za-z0-9_-]{43}"
UP = "\x1b[A"
SRC = Path(__file__).resolve().parents[2] / "src"


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    # A terminal prompt_toolkit knows; no cursor-position queries a pty would never answer.
    env.update(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", CORRAL_DATA_DIR=str(tmp_path / "data"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[pexpect.spawn]:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "corral", "shell"],
        cwd=str(tmp_path),
        env=environment(tmp_path),
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 160),
    )
    child.expect("`help` lists the commands")
    child.expect(NEW_PROMPT)
    yield child
    if child.isalive():
        child.terminate(force=True)


def run(child: pexpect.spawn, line: str) -> str:
    """Type ``line``, press Enter, and return what was printed before the next prompt."""
    child.send(line + "\r")
    child.expect(NEW_PROMPT)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before)


def test_seed_commands_and_keys_commands_at_the_prompt(shell: pexpect.spawn) -> None:
    made = run(shell, "generatekey")
    (key,) = re.findall(KEY, made)
    assert "shown this once" in made
    assert len(re.findall(KEY, run(shell, "generatekeys 2"))) == 2
    created = run(shell, "keys create --name ci --models llama3.2 --rpm 60")
    assert re.search(KEY, created)
    listing = run(shell, "listkeys")
    assert "ci" in listing and "llama3.2" in listing and key not in listing
    assert len([line for line in listing.splitlines() if "corral_" in line]) == 4
    assert "revoked key 4 'ci'" in run(shell, "keys revoke ci")
    assert "deleted key 1" in run(shell, "removekey " + key)
    assert "no key with id or name 'ghost'" in run(shell, "keys show ghost")
    assert "unknown command 'frobnicate'" in run(shell, "frobnicate")
    added = run(shell, "addwebhook http://example.invalid/hook")
    assert re.search(r"whsec_[A-Za-z0-9_-]{43}", added) and "shown this once" in added
    listed = run(shell, "listwebhooks")
    assert "http://example.invalid/hook" in listed and "whsec_" not in listed
    assert "deleted webhook 1" in run(shell, "deletewebhook 1")
    assert "keys create --name NAME" in run(shell, "help")
    assert "--max-concurrency" in run(shell, "help keys create")
    shell.send("exit\r")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0


def test_tab_completes_commands_and_key_names(shell: pexpect.spawn) -> None:
    run(shell, "keys create --name build-bot")
    shell.send("lis\t")
    shell.expect("tkeys")  # Tab inserted the rest of "listkeys"
    shell.send("\r")
    shell.expect(NEW_PROMPT)
    assert "build-bot" in shell.before
    shell.send("keys show bui\t")
    shell.expect("ld-bot")
    shell.send("\r")
    shell.expect(NEW_PROMPT)
    assert "name:            build-bot" in shell.before


def test_history_recalls_earlier_commands_across_sessions(
    shell: pexpect.spawn, tmp_path: Path
) -> None:
    run(shell, "keys create --name remembered")
    shell.send(UP)
    shell.expect("remembered")  # the last line is back in the buffer
    shell.send("\x15")  # Ctrl-U: clear it
    shell.send("exit\r")
    shell.expect(pexpect.EOF)
    history = (tmp_path / "data" / "shell_history").read_text()
    assert "keys create --name remembered" in history
    again = pexpect.spawn(
        sys.executable, ["-m", "corral", "shell"], cwd=str(tmp_path),
        env=environment(tmp_path), encoding="utf-8", timeout=20, dimensions=(40, 160),
    )  # fmt: skip
    try:
        again.expect(NEW_PROMPT)
        again.send(UP)
        again.expect("exit")
        again.send(UP)
        again.expect("remembered")
    finally:
        again.terminate(force=True)


def test_ctrl_d_leaves_and_ctrl_c_only_clears_the_line(shell: pexpect.spawn) -> None:
    shell.send("keys list")
    shell.sendcontrol("c")
    shell.expect(NEW_PROMPT)
    shell.sendcontrol("d")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0


def test_without_a_terminal_it_reads_one_command_a_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "corral", "shell"],
        input="generatekey\nkeys create --name piped\nlistkeys\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment(tmp_path),
        timeout=60,
        check=True,
    )
    assert len(re.findall(KEY, done.stdout)) == 2
    assert "piped" in done.stdout and PROMPT not in done.stdout
