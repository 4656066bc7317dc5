"""Log lines: JSON, one per request, to standard error or a size-rotated file."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from corral.http.messages import Headers, Request
from corral.observability.logs import (
    AccessLog,
    access_entry,
    configure_logging,
    milliseconds,
    raw_writer,
)
from corral.settings import load_settings


def test_log_file_rotates_by_size_and_keeps_both_kinds_of_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "corral.log"
    handler = configure_logging("info", log_file=path, max_bytes=2000, backups=2)
    try:
        access = AccessLog(write=raw_writer(handler))
        logging.getLogger("corral.test").info("started", extra={"fields": {"port": 1}})
        for i in range(200):
            access.record({"request_id": f"r{i}", "status": 200, "route": "/api/chat"})
            access.flush()
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["corral.log", "corral.log.1", "corral.log.2"]
        lines = [
            orjson.loads(line)
            for p in path.parent.iterdir()
            for line in p.read_bytes().splitlines()
        ]
        assert all(isinstance(entry, dict) for entry in lines)
        assert any(entry.get("request_id") == "r199" for entry in lines)
        assert all(p.stat().st_size <= 2200 for p in path.parent.iterdir())
    finally:
        handler.close()
        logging.getLogger("corral").handlers.clear()


def test_seed_names_for_logging_are_accepted(tmp_path: Path) -> None:
    settings = load_settings(
        env={"DEBUG": "true", "LOG_FILE": str(tmp_path / "g.log")}, dotenv_path=None
    )
    assert settings.log_level == "debug"
    assert settings.log_file == tmp_path / "g.log"
    assert load_settings(env={"DEBUG": "false"}, dotenv_path=None).log_level == "info"
    # corral's own name wins over the seed's
    both = load_settings(env={"DEBUG": "1", "CORRAL_LOG_LEVEL": "warning"}, dotenv_path=None)
    assert both.log_level == "warning"


@pytest.mark.parametrize(
    "seconds", [0.0, 0.0000004, 0.0000006, 0.0012344, 0.0012346, 0.25, 1.5, 59.9999996, 3600.5]
)
def test_milliseconds_are_rounded_to_the_microsecond(seconds: float) -> None:
    assert milliseconds(seconds) == pytest.approx(round(seconds * 1000, 3), abs=1e-9)
    assert len(repr(milliseconds(seconds)).partition(".")[2]) <= 3


def test_an_access_line_has_the_request_and_only_the_state_that_was_set() -> None:
    request = Request("POST", "/api/chat", "", Headers([]), b"{}", ("10.0.0.9", 5000))
    request.state.update(
        request_id="r1", started=100.0, route="/api/chat", model="llama3.2", cache=None,
        generated_tokens=7, principal="never logged",
    )  # fmt: skip
    entry = access_entry(request, 200, 321, now=100.0125, first_byte_at=100.002)
    assert entry == {
        "request_id": "r1", "client": "10.0.0.9", "method": "POST", "route": "/api/chat",
        "status": 200, "bytes": 321, "duration_ms": 12.5, "model": "llama3.2",
        "generated_tokens": 7, "ttfb_ms": 2.0,
    }  # fmt: skip
