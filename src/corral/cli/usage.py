"""``corral usage``: who used what, from the usage records in the database.

Works on the database directly, like ``corral keys``; no running corral is needed::

    $ corral usage --by key --since 7d
    key  name  requests  errors  prompt  generated  total  duration_ms
    1    ci    42        0       1092    12600      13692  84211.4
    $ corral usage --by day --since 2026-11-01 --csv > usage.csv
    $ corral usage --by model --json
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

import click

from corral.cli.keys import runner, store_options

if TYPE_CHECKING:
    from corral.admin import AdminService
    from corral.storage.usage import UsageTotals

COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens",
           "duration_ms")  # fmt: skip
HEADINGS = ("requests", "errors", "prompt", "generated", "total", "duration_ms")


def render_table(by: str, rows: list[UsageTotals]) -> str:
    head = [by, "name"] if by == "key" else [by]
    table = [head + list(HEADINGS)]
    for row in rows:
        shown = row.as_dict()
        first = [row.group or "-", row.name or "-"] if by == "key" else [row.group or "-"]
        table.append(first + [str(shown[column]) for column in COLUMNS])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def render_csv(by: str, rows: list[UsageTotals]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([by, "name", *COLUMNS])
    for row in rows:
        shown = row.as_dict()
        writer.writerow([row.group or "", row.name or "", *(shown[c] for c in COLUMNS)])
    return out.getvalue()


@click.command()
@click.option("--by", type=click.Choice(["key", "model", "backend", "day"]), default="key",
              show_default=True, help="What to total by.")  # fmt: skip
@click.option("--since", help="24h, 7d, 4w, a date (2026-11-01) or an ISO time (default: all).")
@click.option("--until", help="The end, in the same forms (default: now).")
@click.option("--key", "key_ref", help="Only this key (id, name or visible prefix).")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
@click.option("--csv", "csv_output", is_flag=True, help="Print CSV.")
@store_options
@click.pass_context
def usage(ctx: click.Context, /, by: str, since: str | None, until: str | None,
          key_ref: str | None, json_output: bool, csv_output: bool,
          **store: Any) -> None:  # fmt: skip
    """Requests and tokens per key, model, backend or day."""
    from corral.storage.usage import UsageQuery, parse_since

    async def op(admin: AdminService) -> list[UsageTotals]:
        now = admin.now()
        key_id = (await admin.resolve(key_ref)).id if key_ref is not None else None
        query = UsageQuery(
            by=by,  # type: ignore[arg-type]
            since=parse_since(since, now),
            until=parse_since(until, now),
            key_id=key_id,
        )
        return await admin.usage_report(query)

    rows = runner(ctx, store).run(op)
    if json_output:
        click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
    elif csv_output:
        click.echo(render_csv(by, rows), nl=False)
    elif rows:
        click.echo(render_table(by, rows))
    else:
        click.echo("no usage recorded in that time")
