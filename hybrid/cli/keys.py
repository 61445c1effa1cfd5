"""`hybrid keys new`: a gateway API key and the config entry holding its hash."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml

app = typer.Typer(help="API keys for the gateway.", no_args_is_help=True)


@app.command("new")
def new_key(
    name: Annotated[str, typer.Option(help="Who holds the key (shown in logs and metrics).")],
    models: Annotated[
        list[str] | None, typer.Option("--model", help="Restrict to this model (repeatable).")
    ] = None,
    admin: Annotated[bool, typer.Option(help="An admin key (adapter routes, /metrics).")] = False,
) -> None:
    """Make a random key; print it once, and the config entry that stores only its hash."""
    from hybrid.server import new_api_key

    key, section, entry = new_api_key(name, models, admin=admin)
    typer.echo(f"key (shown once, give it to {name}): {key}")
    typer.echo(f"add to hybrid.yaml under gateway.auth.{section}:")
    typer.echo(yaml.safe_dump([entry], sort_keys=False).rstrip())
