"""How ``corral keys`` and ``corral shell`` print keys: a table, one key's fields, or JSON.

A key's plaintext is printed only by :func:`echo_created`, on standard output by itself (the
notes go to standard error), so ``KEY=$(corral keys create --name ci)`` captures just the key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from corral.storage.keys import KeyRecord

COLUMNS = ("id", "name", "prefix", "status", "models", "rpm", "tpm", "expires", "last used")


def now() -> datetime:
    return datetime.now(UTC)


def as_json(record: KeyRecord, plaintext: str | None = None) -> dict[str, Any]:
    from corral.storage.keys import describe

    shown = describe(record, now())
    return {"key": plaintext, **shown} if plaintext is not None else shown


def echo_created(made: list[tuple[KeyRecord, str]], json_output: bool) -> None:
    if json_output:
        rows = [as_json(record, plaintext) for record, plaintext in made]
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    for record, plaintext in made:
        click.echo(f"created key {record.id} {record.name!r} ({record.prefix}...)", err=True)
        click.echo(plaintext)
    click.echo("Each key is shown this once: store it now.", err=True)


def render_table(records: list[KeyRecord]) -> str:
    moment = now()

    def cells(r: KeyRecord) -> list[str]:
        def day(value: datetime | None) -> str:
            return value.strftime("%Y-%m-%d %H:%M") if value else "-"

        models = ",".join(r.models) if r.models is not None else "*"
        limits = ["-" if v is None else str(v) for v in (r.rpm, r.tpm)]
        status = r.status(moment)
        return [str(r.id), r.name, r.prefix, status, models, *limits, day(r.expires_at),
                day(r.last_used_at)]  # fmt: skip

    table = [list(COLUMNS), *(cells(r) for r in records)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def echo_records(records: list[KeyRecord], json_output: bool) -> None:
    if json_output:
        click.echo(json.dumps([as_json(r) for r in records], indent=2))
    elif records:
        click.echo(render_table(records))
    else:
        click.echo("no keys yet: `corral keys create --name NAME` makes one")


def echo_record(record: KeyRecord, json_output: bool, verb: str | None = None) -> None:
    if json_output:
        click.echo(json.dumps(as_json(record), indent=2))
    elif verb is not None:
        click.echo(f"{verb} key {record.id} {record.name!r} ({record.prefix}...)")
    else:
        for name, value in as_json(record).items():
            shown = ",".join(value) if isinstance(value, list) else value
            click.echo(f"{name + ':':17}{'-' if shown is None else shown}")
