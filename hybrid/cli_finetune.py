"""`hybrid eval adapter ADAPTER`, `hybrid adapter merge` and `hybrid adapter scale`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hybrid.config import load_eval_config

adapter_app = typer.Typer(
    help="Adapters: register, load, unload, promote, list (through the gateway), merge, scale.",
    no_args_is_help=True,
)


def evaluate(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder written by `hybrid train`.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Eval settings YAML (rules, prompts, ...).")
    ] = None,
    general: Annotated[
        list[Path] | None, typer.Option(help="General-ability guard set (default: bundled).")
    ] = None,
    prompts: Annotated[
        list[Path] | None, typer.Option(help="Prompts for generated-answer rules.")
    ] = None,
    bound: Annotated[
        float | None, typer.Option(help="Max relative rise of the guard loss (0.1 = 10%).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: ADAPTER/eval).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Base vs adapter: in-domain seen, held-out and a general guard; exit 1 if a bound is missed."""
    from finetune.evaluation import evaluate_adapter

    overrides: dict = {"adapter": adapter}
    if general:
        overrides["general"] = general
    if prompts:
        overrides["prompts"] = prompts
    if bound is not None:
        overrides["guard_bound"] = bound
    if out is not None:
        overrides["output_dir"] = out
    settings = load_eval_config(config, overrides)
    report = evaluate_adapter(settings, progress=not quiet)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for s in report.sets:
            typer.echo(
                f"{s.name:20s} base {s.base_loss:.4f} -> adapter {s.adapter_loss:.4f} ({s.change:+.1%})"
            )
        if report.adherence:
            a = report.adherence
            typer.echo(f"{'adherence':20s} base {a.base_rate:.0%} -> adapter {a.adapter_rate:.0%}")
        out_dir = settings.output_dir or settings.adapter / "eval"
        typer.echo(f"{'PASS' if report.passed else 'FAIL'}: report in {out_dir}/report.md")
        for failure in report.failures:
            typer.echo(f"  - {failure}", err=True)
    if not report.passed:
        raise typer.Exit(1)


@adapter_app.command()
def merge(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder.")],
    out: Annotated[Path, typer.Option(help="Folder for the merged model.")],
    base_model: Annotated[str | None, typer.Option(help="Default: the manifest's base.")] = None,
    dtype: Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")] = "auto",
) -> None:
    """Merge an adapter into its base model (one plain model folder, for single-adapter use)."""
    from finetune.merge import merge_adapter

    path = merge_adapter(adapter, out, base_model=base_model, dtype=dtype)
    typer.echo(f"merged model written to {path}")


@adapter_app.command()
def scale(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder.")],
    factor: Annotated[float, typer.Option(help="Strength: 1 = as trained, 0.5 = half.")],
    out: Annotated[Path, typer.Option(help="Folder for the scaled adapter.")],
) -> None:
    """Copy an adapter with its strength scaled (lora_alpha x factor); register the copy as a
    new version to trade voice for the base model's facts without retraining."""
    from finetune.scaling import scale_adapter

    path = scale_adapter(adapter, out, factor)
    typer.echo(f"adapter scaled x{factor:g} written to {path}")
