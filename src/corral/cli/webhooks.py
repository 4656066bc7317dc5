"""``corral webhooks``: subscribe URLs to corral's events, list and delete them.

    $ corral webhooks add https://example.com/hook --events key.created,backend.down
    whsec_...                          # the signing secret, shown once; stdout holds only it
    $ corral webhooks list [--json]
    $ corral webhooks deliveries 1     # the newest deliveries and how they went
    $ corral webhooks delete 1

Seed 004's ``addwebhook URL``, ``deletewebhook ID`` and ``listwebhooks`` work as well, as
``corral <command>``, ``corral webhooks <command>`` or in ``corral shell``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from corral.cli.keys import runner, store_options
from corral.storage.webhooks import EVENTS

if TYPE_CHECKING:
    from corral.admin import AdminService
    from corral.storage.webhooks import WebhookRecord

json_flag = click.option("--json", "json_output", is_flag=True, help="Print JSON.")
events_help = (
    "Events, comma-separated, or * for all: " + ", ".join(EVENTS)
    + " (default: all but request.completed)."
)  # fmt: skip


def echo_hooks(hooks: list[WebhookRecord], json_output: bool) -> None:
    if json_output:
        click.echo(json.dumps([hook.describe() for hook in hooks], indent=2))
        return
    if not hooks:
        click.echo("no webhooks yet: `corral webhooks add URL` makes one")
        return
    table = [["id", "url", "events", "active"]]
    table += [[str(h.id), h.url, ",".join(h.events), "yes" if h.active else "no"] for h in hooks]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


@click.group()
def webhooks() -> None:
    """Subscribe URLs to corral's events; list and delete them."""


@webhooks.command()
@click.argument("url")
@click.option("--events", help=events_help)
@json_flag
@store_options
@click.pass_context
def add(ctx: click.Context, /, url: str, events: str | None, json_output: bool,
        **store: Any) -> None:  # fmt: skip
    """Subscribe URL; print the signing secret (the only time it is shown)."""

    async def op(admin: AdminService) -> tuple[WebhookRecord, str]:
        return await admin.add_webhook(url, events)

    record, secret = runner(ctx, store).run(op)
    if json_output:
        click.echo(json.dumps({**record.describe(), "secret": secret}, indent=2))
        return
    click.echo(f"added webhook {record.id} for {record.url} ({','.join(record.events)})", err=True)
    click.echo(secret)
    click.echo("The signing secret is shown this once: store it now.", err=True)


@webhooks.command("list")
@json_flag
@store_options
@click.pass_context
def list_hooks(ctx: click.Context, /, json_output: bool, **store: Any) -> None:
    """Every webhook and the events it receives."""
    echo_hooks(runner(ctx, store).run(lambda admin: admin.list_webhooks()), json_output)


@webhooks.command()
@click.argument("webhook_id")
@json_flag
@store_options
@click.pass_context
def delete(ctx: click.Context, /, webhook_id: str, json_output: bool, **store: Any) -> None:
    """Remove a webhook and the deliveries it is still owed."""
    record = runner(ctx, store).run(lambda admin: admin.delete_webhook(webhook_id))
    if json_output:
        click.echo(json.dumps(record.describe(), indent=2))
    else:
        click.echo(f"deleted webhook {record.id} ({record.url})")


@webhooks.command()
@click.argument("webhook_id", type=int)
@json_flag
@store_options
@click.pass_context
def deliveries(ctx: click.Context, /, webhook_id: int, json_output: bool, **store: Any) -> None:
    """The newest deliveries to a webhook: attempts, delivered or the last error."""
    from corral.http.admin_recording import describe_delivery

    items = runner(ctx, store).run(lambda admin: admin.webhook_deliveries(webhook_id))
    rows = [describe_delivery(item) for item in items]
    if json_output:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = f"delivered {row['delivered_at']}" if row["delivered_at"] else (
            f"next try {row['next_attempt_at']}: {row['last_error'] or 'not tried yet'}"
        )
        click.echo(f"{row['id']}  {row['event']}  attempts={row['attempts']}  {state}")


# ---- seed 004's command names -----------------------------------------------------------------


@click.command()
@click.argument("url")
@click.option("--events", help=events_help)
@json_flag
@store_options
@click.pass_context
def addwebhook(ctx: click.Context, /, url: str, events: str | None, json_output: bool,
               **store: Any) -> None:  # fmt: skip
    """Add a webhook URL (seed 004); prints its signing secret once."""
    ctx.invoke(add, url=url, events=events, json_output=json_output, **store)


@click.command()
@click.argument("webhook_id")
@json_flag
@store_options
@click.pass_context
def deletewebhook(ctx: click.Context, /, webhook_id: str, json_output: bool, **store: Any) -> None:
    """Delete a webhook by id (seed 004)."""
    ctx.invoke(delete, webhook_id=webhook_id, json_output=json_output, **store)


@click.command()
@json_flag
@store_options
@click.pass_context
def listwebhooks(ctx: click.Context, /, json_output: bool, **store: Any) -> None:
    """List every webhook (seed 004)."""
    ctx.invoke(list_hooks, json_output=json_output, **store)


SEED_WEBHOOK_COMMANDS = (addwebhook, deletewebhook, listwebhooks)
for _command in SEED_WEBHOOK_COMMANDS:
    webhooks.add_command(_command)
