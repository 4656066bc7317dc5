"""``corral backends``: the fleet as a running corral sees it; drain and re-enable backends.

    $ corral backends                  # table of state, in-flight, queued, models, loaded
    $ corral backends --json
    $ corral backends drain gpu1       # no new requests; in-flight ones finish
    $ corral backends enable gpu1
"""

from __future__ import annotations

import json
from typing import Any

import click

from corral.cli.admin_client import AdminClient

COLUMNS = ("name", "state", "in_flight", "queued", "latency_ms", "models", "loaded")


def connection_options(command: Any) -> Any:
    command = click.option(
        "--url",
        envvar="CORRAL_URL",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="The running corral.",
    )(command)
    return click.option(
        "--admin-token", envvar="CORRAL_ADMIN_TOKEN", help="The admin token, if one is set."
    )(command)


@click.group(invoke_without_command=True)
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def backends(ctx: click.Context, url: str, admin_token: str | None, as_json: bool) -> None:
    """Show the fleet; `drain NAME` / `enable NAME` take a backend out or back."""
    ctx.obj = AdminClient(url, admin_token)
    if ctx.invoked_subcommand is None:
        rows = ctx.obj.call("GET", "/admin/backends")["backends"]
        click.echo(json.dumps(rows, indent=2) if as_json else render_table(rows))


@backends.command()
@click.argument("name")
@click.pass_obj
def drain(client: AdminClient, name: str) -> None:
    """Stop sending new requests to NAME; the ones in flight finish."""
    row = client.call("POST", f"/admin/backends/{name}/drain")
    click.echo(f"{row['name']}: {row['state']}, {row['in_flight']} in flight")


@backends.command()
@click.argument("name")
@click.pass_obj
def enable(client: AdminClient, name: str) -> None:
    """Put NAME back in rotation."""
    row = client.call("POST", f"/admin/backends/{name}/enable")
    click.echo(f"{row['name']}: {row['state']}")


def render_table(rows: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column == "loaded":
            return ", ".join(m["name"] for m in value or []) or "-"
        if column == "models":
            return str(len(value)) if value is not None else "?"
        return "-" if value is None else str(value)

    table = [list(COLUMNS)] + [[cell(r, c) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )
