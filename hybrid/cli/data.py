"""`hybrid data ...`: read and check training data before spending compute on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hybrid.cli.help import field_help
from hybrid.config import TrainConfig
from hybrid.training import check_training_data, data_formats

app = typer.Typer(help="Training data: read, check, report.", no_args_is_help=True)


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="Files (.jsonl .json .txt .md) or folders.")],
    format_: Annotated[
        str, typer.Option("--format", help=f"One of: {', '.join(data_formats())}.")
    ] = "auto",
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="Base model folder; without it lengths are word estimates."),
    ] = None,
    max_length: Annotated[
        int, typer.Option(min=16, help=field_help(TrainConfig, "max_length"))
    ] = TrainConfig.model_fields["max_length"].default,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Counts, lengths, duplicates, diversity and chat-template check; exit 1 on errors."""
    report = check_training_data(paths, format=format_, tokenizer=tokenizer, max_length=max_length)
    if tokenizer is None:
        typer.echo(
            "note: no --tokenizer given; lengths are whitespace-word estimates and the chat "
            "template is not checked",
            err=True,
        )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.to_text())
    if not report.ok:
        raise typer.Exit(1)
