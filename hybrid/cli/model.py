"""`hybrid model list | prepare`: the packaged base models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hybrid.models import DEFAULT_BASE_MODEL, DEFAULT_CACHE_DIR, packaged_models

app = typer.Typer(help="Base models.", no_args_is_help=True)


@app.command()
def prepare(
    name: Annotated[
        str,
        typer.Argument(help="A packaged base model (see `hybrid model list`)."),
    ] = DEFAULT_BASE_MODEL,
    cache_dir: Annotated[
        Path, typer.Option(help="Where converted models are kept.")
    ] = DEFAULT_CACHE_DIR,
    force: Annotated[bool, typer.Option(help="Convert again even if present.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Convert a packaged base model (a GGUF shipped on PyPI) to a HF folder, once."""
    from hybrid.models import prepare_base_model

    path = prepare_base_model(name, cache_dir, force=force)
    typer.echo(json.dumps({"path": str(path)}) if as_json else str(path))


@app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The packaged base models: name, licence, instruct or pretrained, the pip command."""
    rows = packaged_models()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        kind = "instruct" if row["instruct"] else "pretrained"
        default = " (default)" if row["default"] else ""
        typer.echo(f"{row['name']}{default}: {kind}, {row['licence']}; {row['install']}")
