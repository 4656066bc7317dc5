"""``corral cache``: the response cache of a running corral.

    $ corral cache stats            # what it holds, hits and misses
    $ corral cache stats --json
    $ corral cache clear            # forget every cached answer
"""

from __future__ import annotations

import json
from typing import Any

import click

from corral.cli.admin_client import AdminClient
from corral.cli.backends import connection_options

STATS_ROWS = (
    "backend", "mode", "ttl", "entries", "bytes", "max_bytes", "hits", "misses", "bypasses",
    "coalesced", "stores", "evictions", "errors",
)  # fmt: skip


@click.group()
def cache() -> None:
    """The response cache of a running corral: `stats`, `clear`."""


@cache.command()
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(url: str, admin_token: str | None, as_json: bool) -> None:
    """What the cache holds, and how often it answered."""
    report = AdminClient(url, admin_token).call("GET", "/admin/cache")
    click.echo(json.dumps(report, indent=2) if as_json else render_stats(report))


@cache.command()
@connection_options
def clear(url: str, admin_token: str | None) -> None:
    """Forget every cached answer (on every instance, with Redis)."""
    report = AdminClient(url, admin_token).call("DELETE", "/admin/cache")
    click.echo(f"cleared {report['cleared']} cached answers")


def render_stats(report: dict[str, Any]) -> str:
    width = max(len(name) for name in STATS_ROWS)
    lines = []
    for name in STATS_ROWS:
        value = report.get(name)
        lines.append(f"{name.ljust(width)}  {'-' if value is None else value}")
    return "\n".join(lines)
