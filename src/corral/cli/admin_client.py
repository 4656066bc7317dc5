"""Talking to a running corral's admin API from the command line (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import click


class AdminClient:
    """``AdminClient("http://127.0.0.1:8080", token).call("GET", "/admin/backends")``"""

    def __init__(self, base_url: str, token: str | None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            raise click.ClickException(f"{err.code}: {_message(err.read())}") from None
        except urllib.error.URLError as err:
            raise click.ClickException(
                f"cannot reach corral at {self.base_url}: {err.reason}"
            ) from None
        return json.loads(body) if body else None


def _message(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:200]
    return str(error.get("message") if isinstance(error, dict) else error)
