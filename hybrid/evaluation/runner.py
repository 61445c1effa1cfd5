"""The whole `hybrid eval app` run, callable from Python::

from hybrid.evaluation.runner import AppEvalSettings, evaluate_apps
from hybrid.evaluation.responders import GatewayResponder

settings = AppEvalSettings(apps=("northwind-ceo", "northwind-base"),
                           questions="examples/ceo-report-qa/eval/questions.jsonl",
                           output_dir="artifacts/eval/northwind")
report = evaluate_apps(settings, GatewayResponder("http://127.0.0.1:8000"))
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field, model_validator

from hybrid.config_files import Frozen
from hybrid.errors import UsageError
from hybrid.evaluation.ab_sheet import write_ab_sheet
from hybrid.evaluation.comparison import compare
from hybrid.evaluation.labelled import LabelledCase, read_cases
from hybrid.evaluation.report import summary_line, write_report
from hybrid.evaluation.responders import Responder
from hybrid.evaluation.scoring import CaseResult, score_case, summarise


class AppEvalSettings(Frozen):
    apps: tuple[str, ...] = Field(min_length=1)
    """The app under test first, then the apps it is compared against."""
    questions: Path
    """Labelled question file (JSON Lines; see hybrid/evaluation/labelled.py)."""
    output_dir: Path
    """Report folder: report.md, report.json, chart.png (+ ab_sheet.html, ab_key.json)."""
    only: dict[str, str] = Field(default_factory=dict)
    """Keep the cases whose field has this value (e.g. brand=brewbird)."""
    sampling: dict = Field(default_factory=lambda: {"temperature": 0})
    """Sent with every request (the apps' own defaults fill the rest)."""
    style: tuple[Path, ...] = ()
    """The adapter's style data: a training config (its data files) or chat JSONL files."""
    style_baseline: Path | None = None
    """The base model's replies to the style prompts (negatives of the voice model)."""
    judge_url: str | None = None
    judge_model: str | None = None
    judge_api_key: str | None = None
    ab_seed: int = 0
    """Seed of the A/B order of the blind sheet."""
    concurrency: int = Field(default=1, ge=1, le=64)
    """Questions in flight at once against a gateway (the engine batches them; latencies then
    include queueing). In-process runs ask one at a time whatever this says."""

    @model_validator(mode="after")
    def _pairs(self) -> AppEvalSettings:
        if bool(self.style) != (self.style_baseline is not None):
            raise ValueError(
                "--style and --style-baseline go together (the voice model needs both)"
            )
        if (self.judge_url is None) != (self.judge_model is None):
            raise ValueError("--judge-url and --judge-model go together")
        if len(set(self.apps)) != len(self.apps):
            raise ValueError(f"an app is named twice: {', '.join(self.apps)}")
        return self


def _voice_model(settings: AppEvalSettings):
    from hybrid.evaluation.voice import (
        fit_voice_model,
        read_baseline,
        read_style_examples,
        style_files,
    )

    files = [f for path in settings.style for f in style_files(path)]
    style = [ex.reply for ex in read_style_examples(files)]
    return fit_voice_model(style, read_baseline(settings.style_baseline)), style


def evaluate_apps(settings: AppEvalSettings, responder: Responder, progress: bool = True) -> dict:
    """Ask every labelled question of every app, score, and write the report folder.

    Raises:
        UsageError: an unknown app, a malformed or empty question file, bad style data.
        HybridError: the judge or the gateway cannot be reached.
    """
    cases = read_cases(settings.questions, settings.only)
    served = responder.apps()
    unknown = [a for a in settings.apps if a not in served]
    if unknown:
        raise UsageError(
            f"unknown app '{unknown[0]}'; apps available: {', '.join(served) or 'none'}"
        )
    voice, style = _voice_model(settings) if settings.style else (None, [])
    judge = None
    if settings.judge_url is not None:
        from hybrid.evaluation.judge import Judge

        judge = Judge(settings.judge_url, settings.judge_model, settings.judge_api_key)
    results: dict[str, list[CaseResult]] = {}
    for app in settings.apps:
        results[app] = _run_app(
            app, cases, responder, settings.sampling, progress, settings.concurrency
        )
    if voice is not None:
        results = {app: _with_voice(rs, voice) for app, rs in results.items()}
    if judge is not None:
        results = {app: _with_judge(rs, cases, judge) for app, rs in results.items()}
    report = {
        "settings": {
            "apps": list(settings.apps),
            "questions_file": str(settings.questions),
            "cases": len(cases),
            "only": settings.only,
            "mode": type(responder).__name__.removesuffix("Responder").lower() or "responder",
            "sampling": settings.sampling,
            "concurrency": settings.concurrency if _concurrent(responder) else 1,
            "judge_model": settings.judge_model,
        },
        "voice_validation": voice.validation.to_dict() if voice else None,
        "summaries": [summarise(app, rs) for app, rs in results.items()],
        "comparisons": [
            compare(
                settings.apps[0],
                results[settings.apps[0]],
                other,
                results[other],
                _anchor(voice, style, results[other]) if voice is not None else (),
            )
            for other in settings.apps[1:]
        ],
        "results": {app: [r.to_dict() for r in rs] for app, rs in results.items()},
    }
    paths = write_report(report, settings.output_dir)
    if len(settings.apps) >= 2:
        sheet, key = write_ab_sheet(
            settings.output_dir,
            _ab_questions(cases, results, settings.apps[:2]),
            *settings.apps[:2],
            seed=settings.ab_seed,
        )
        paths |= {"ab_sheet": sheet, "ab_key": key}
    report["paths"] = {k: str(v) for k, v in paths.items()}
    report["summary_line"] = summary_line(report["summaries"], report["comparisons"])
    return report


def _concurrent(responder: Responder) -> bool:
    return bool(getattr(responder, "thread_safe", False))


def _run_app(
    app: str,
    cases: list[LabelledCase],
    responder: Responder,
    sampling: dict,
    progress: bool,
    concurrency: int = 1,
) -> list[CaseResult]:
    from concurrent.futures import ThreadPoolExecutor

    no_context = responder.no_context_message(app)
    done = 0

    def ask(case: LabelledCase) -> CaseResult:
        nonlocal done
        reply = responder.reply(app, case.chat_messages(), dict(sampling))
        result = score_case(case, reply, no_context)
        done += 1
        if progress:
            print(f"\r{app}: {done}/{len(cases)}", end="", file=sys.stderr, flush=True)
        return result

    workers = concurrency if _concurrent(responder) else 1
    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(ask, cases))  # in the order of the question file
    if progress:
        print(file=sys.stderr)
    return out


def _with_voice(results: list[CaseResult], voice) -> list[CaseResult]:
    from dataclasses import replace

    generated = [i for i, r in enumerate(results) if not r.abstained and r.error is None]
    scores = voice.score([results[i].answer for i in generated])
    updated = list(results)
    for i, score in zip(generated, scores, strict=True):
        updated[i] = replace(updated[i], voice=score)
    return updated


def _anchor(voice, style: list[str], results: list[CaseResult]) -> list[tuple[float, float]]:
    """Voice scores of these answers with and without a closing sentence of the style data."""
    from hybrid.evaluation.voice import anchor_pairs, closing_sentences

    answers = [r.answer for r in results if r.voice is not None]
    return anchor_pairs(voice, answers, closing_sentences(style))


def _with_judge(results: list[CaseResult], cases: list[LabelledCase], judge) -> list[CaseResult]:
    from dataclasses import replace

    return [
        replace(r, judge=judge.grade(c.question, c.answers, r.answer))
        if r.correct is not None
        else r
        for r, c in zip(results, cases, strict=True)
    ]


def _ab_questions(cases, results, pair) -> list[dict]:
    first, second = pair
    return [
        {
            "id": case.line,
            "question": case.question,
            "messages": [t.model_dump() for t in case.messages],
            "answers": {
                first: results[first][i].answer or f"(error: {results[first][i].error})",
                second: results[second][i].answer or f"(error: {results[second][i].error})",
            },
        }
        for i, case in enumerate(cases)
    ]
