"""`hybrid train CONFIG.yaml` and `hybrid model prepare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from hybrid.cli_state import State
from hybrid.config import load_context_training, load_train_config
from hybrid.errors import ConfigError

model_app = typer.Typer(help="Base models.", no_args_is_help=True)


def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="Training config YAML (see examples/).")],
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing adapter folder.")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="Adapter folder (overrides output_dir).")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Base model folder or name (overrides base_model).")
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Tokens per example (overrides max_length).")
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
    from finetune.training import load_training_examples
    from finetune.training import train as run_training

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
    settings = load_train_config(config, overrides)
    context = None if no_context else load_context_training(config)
    examples = None
    if context is not None:
        from hybrid.apps.app import open_pipeline
        from hybrid.apps.context_training import with_app_context
        from hybrid.apps.spec import load_app_spec

        state: State = ctx.obj
        pipeline = open_pipeline(load_app_spec(context.app), state.catalog)
        from finetune.base_models import resolve_base_model
        from hybrid.apps.budget import PromptBudget

        budget = PromptBudget(resolve_base_model(settings.base_model), settings.max_length)
        examples, changed = with_app_context(
            load_training_examples(settings),
            pipeline,
            share=context.share,
            seed=context.seed,
            budget=budget,
        )
        if not quiet:
            typer.echo(
                f"{changed} of {len(examples)} examples laid out as app "
                f"'{pipeline.spec.name}' serves them (knowledge base {pipeline.spec.knowledge_base})"
            )
        if context.grounded_examples:
            from hybrid.apps.grounded_examples import (
                grounded_examples,
                knowledge_base_passages,
                load_questions,
            )

            grounded = grounded_examples(
                knowledge_base_passages(pipeline.knowledge_base),
                pipeline.spec,
                examples,
                count=context.grounded_examples,
                seed=context.seed,
                exclude=load_questions(context.holdout),
                budget=budget,
            )
            examples = [*examples, *grounded]
            if not quiet:
                typer.echo(
                    f"{len(grounded)} grounded-voice examples added from the knowledge base "
                    "(figures perturbed, answers copy them with their [n] citation)"
                )
    result = run_training(
        settings, resume=resume, overwrite=overwrite, progress=not quiet, examples=examples
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


@model_app.command()
def prepare(
    name: Annotated[
        str,
        typer.Argument(help="A packaged base model (see `hybrid model list`)."),
    ] = "SmolLM2-135M-Instruct",
    cache_dir: Annotated[Path, typer.Option(help="Where converted models are kept.")] = Path(
        "~/.cache/hybrid/models"
    ),
    force: Annotated[bool, typer.Option(help="Convert again even if present.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Convert a packaged base model (a GGUF shipped on PyPI) to a HF folder, once."""
    from finetune.base_models import prepare_model

    path = prepare_model(name, cache_dir.expanduser(), force=force)
    typer.echo(json.dumps({"path": str(path)}) if as_json else str(path))


@model_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The packaged base models: name, licence, instruct or pretrained, the pip command."""
    from finetune.base_models import DEFAULT_BASE_MODEL, PACKAGED_MODELS

    rows = [
        {
            "name": m.name,
            "default": m.name == DEFAULT_BASE_MODEL,
            "licence": m.licence,
            "instruct": m.instruct,
            "architecture": m.architecture,
            "install": m.pip_command,
        }
        for m in PACKAGED_MODELS.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        kind = "instruct" if row["instruct"] else "pretrained"
        default = " (default)" if row["default"] else ""
        typer.echo(f"{row['name']}{default}: {kind}, {row['licence']}; {row['install']}")
