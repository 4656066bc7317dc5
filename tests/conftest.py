"""Fixtures every test directory may use."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from corral.observability.logs import JsonFormatter


@pytest.fixture
def corral_log() -> Iterator[io.StringIO]:
    """Every corral log record, at debug level, formatted as production formats it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("corral")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
