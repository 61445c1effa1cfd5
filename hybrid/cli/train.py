"""`hybrid train CONFIG.yaml`: a shell over `hybrid.train` (hybrid/training.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from hybrid.cli.help import field_help
from hybrid.cli.state import State
from hybrid.config import TrainConfig
from hybrid.errors import ConfigError
from hybrid.training import train as run_training

_OVERRIDES = " Overrides the config file."


def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="Training config YAML (see examples/).")],
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing adapter folder.")] = False,
    max_steps: Annotated[
        int | None, typer.Option(help=field_help(TrainConfig, "max_steps", _OVERRIDES))
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help=field_help(TrainConfig, "output_dir", _OVERRIDES))
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help=field_help(TrainConfig, "base_model", _OVERRIDES))
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help=field_help(TrainConfig, "max_length", _OVERRIDES))
    ] = None,
    settings_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any training setting as key=value (YAML value), e.g. --set epochs=1."
        ),
    ] = None,
    no_context: Annotated[
        bool, typer.Option("--no-context", help="Ignore the config's context: section.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train an adapter; writes the adapter, metrics.json, loss_curve.png and a manifest.

    With a `context: {app: APP.yaml}` section, each chat example is first laid out as that app
    serves it (persona, template, passages retrieved from its knowledge base)."""
    overrides = {
        key: value
        for key, value in {
            "max_steps": max_steps,
            "output_dir": output_dir,
            "base_model": base_model,
            "max_length": max_length,
        }.items()
        if value is not None
    }
    for item in settings_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write it as key=value, e.g. --set epochs=1")
        overrides[key.strip()] = yaml.safe_load(value)
    state: State = ctx.obj
    result = run_training(
        config,
        overrides=overrides,
        resume=resume,
        overwrite=overwrite,
        use_context=not no_context,
        catalog=lambda: state.catalog,
        progress=not quiet,
        notes=None if quiet else typer.echo,
    )
    m = result.metrics
    val = f", validation loss {m['validation_loss']:.4f}" if "validation_loss" in m else ""
    steps = f"{m['steps']} steps"
    if m.get("resumed_from_step"):
        steps = f"{m['steps_run']} steps run after resuming at step {m['resumed_from_step']}"
        steps += f", {m['steps']} in all"
    typer.echo(
        f"adapter written to {result.adapter_dir} ({steps} in {m['runtime_s']:.0f}s, "
        f"train loss {m['train_loss']:.4f}{val})"
    )
