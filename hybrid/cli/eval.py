"""`hybrid eval adapter ADAPTER` (base vs adapter losses) and `hybrid eval app APP QUESTIONS`
(labelled questions through apps, end to end). Thin: the work is in finetune.evaluation and
hybrid.evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hybrid.cli.help import field_help
from hybrid.config import EvalConfig
from hybrid.errors import UsageError

app = typer.Typer(
    help="Evaluate: an adapter against its base model, or apps on labelled questions.",
    no_args_is_help=True,
)


@app.command("adapter")
def evaluate(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder written by `hybrid train`.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Eval settings YAML (rules, prompts, ...).")
    ] = None,
    general: Annotated[
        list[Path] | None, typer.Option(help=field_help(EvalConfig, "general"))
    ] = None,
    prompts: Annotated[
        list[Path] | None, typer.Option(help=field_help(EvalConfig, "prompts"))
    ] = None,
    bound: Annotated[float | None, typer.Option(help=field_help(EvalConfig, "guard_bound"))] = None,
    out: Annotated[Path | None, typer.Option(help=field_help(EvalConfig, "output_dir"))] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Base vs adapter: in-domain seen, held-out and a general guard; exit 1 if a bound is missed."""
    from hybrid.training import evaluate_adapter

    overrides: dict = {"adapter": adapter}
    if general:
        overrides["general"] = general
    if prompts:
        overrides["prompts"] = prompts
    if bound is not None:
        overrides["guard_bound"] = bound
    if out is not None:
        overrides["output_dir"] = out
    report, settings = evaluate_adapter(config, overrides, progress=not quiet)
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


def _pairs(values: list[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--only {value!r}: expected KEY=VALUE, e.g. brand=brewbird")
        out[key] = wanted
    return out


@app.command("app")
def evaluate_app(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="APP", help="App name (or app YAML file).")],
    questions: Annotated[Path, typer.Argument(help="Labelled questions (JSON Lines).")],
    against: Annotated[
        list[str] | None, typer.Option("--against", help="Apps to compare with (repeatable).")
    ] = None,
    apps: Annotated[
        list[Path] | None,
        typer.Option("--apps", help="App files or folders (default: the config's apps)."),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="A running gateway; default: run the apps in-process.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="API key of the gateway/engine.")] = None,
    engine_url: Annotated[
        str | None,
        typer.Option(help="In-process: OpenAI-compatible engine (vLLM) for the text."),
    ] = None,
    engine_model: Annotated[
        str | None, typer.Option(help="The engine's name of the base model (default: listed).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: eval-reports/APP).")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Keep cases with KEY=VALUE (e.g. brand=brewbird).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.0,
    max_tokens: Annotated[int | None, typer.Option(help="Default: each app's own.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    style: Annotated[
        list[Path] | None,
        typer.Option(help="Voice model positives: training config or chat JSONL (repeatable)."),
    ] = None,
    style_baseline: Annotated[
        Path | None, typer.Option(help="Voice model negatives: base replies JSONL.")
    ] = None,
    judge_url: Annotated[str | None, typer.Option(help="Optional judge (OpenAI URL).")] = None,
    judge_model: Annotated[str | None, typer.Option(help="The judge's model name.")] = None,
    judge_api_key: Annotated[str | None, typer.Option(help="The judge's API key.")] = None,
    ab_seed: Annotated[int, typer.Option(help="Seed of the blind A/B order.")] = 0,
    concurrency: Annotated[
        int, typer.Option(help="Questions in flight at once against --url (the engine batches).")
    ] = 1,
    threads: Annotated[int, typer.Option(help="Torch threads (embeddings, local models).")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Ask APP (and --against apps) every labelled question; report correctness, citations,
    abstention, voice, grounding quality, latency and tokens, with a blind A/B sheet."""
    from hybrid.evaluation.runner import AppEvalSettings, evaluate_apps

    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    names = (name, *(against or []))
    sampling: dict = {"temperature": temperature}
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    if seed is not None:
        sampling["seed"] = seed
    settings = AppEvalSettings(
        apps=names,
        questions=questions,
        output_dir=out or Path("eval-reports") / Path(name).stem,
        only=_pairs(only),
        sampling=sampling,
        style=tuple(style or ()),
        style_baseline=style_baseline,
        judge_url=judge_url,
        judge_model=judge_model,
        judge_api_key=judge_api_key,
        ab_seed=ab_seed,
        concurrency=concurrency,
    )
    if url is not None:
        from hybrid.evaluation.responders import GatewayResponder

        responder = GatewayResponder(url, api_key)
    else:
        from hybrid.evaluation.labelled import read_cases
        from hybrid.evaluation.responders import in_process_responder

        read_cases(settings.questions, settings.only)  # bad input first, before loading models
        config = ctx.obj.config
        responder = in_process_responder(
            names, apps or list(config.apps), config, engine_url, engine_model, api_key
        )
        settings = settings.model_copy(update={"apps": tuple(responder.apps_in_order(names))})
    report = evaluate_apps(settings, responder, progress=not quiet)
    if as_json:
        typer.echo(json.dumps({"summaries": report["summaries"], **report["paths"]}, indent=2))
    else:
        typer.echo(report["summary_line"])
        typer.echo(f"report in {report['paths']['markdown']}")
