"""App evaluation of an example: its labelled set through each app with a voice adapter and
the same retrieval without it (the example's `evaluations` in its run.py), served as a user
serves them.

    .venv/bin/python examples/ceo-report-qa/run.py --quick     # once: knowledge base + adapter
    .venv/bin/python -m bench.app_eval            # (--prepare runs the line above if needed)
    .venv/bin/python -m bench.app_eval --example branded-chatbot --prepare

It reads the example's work folder (`artifacts/EXAMPLE/hybrid.yaml`, written by run.py:
knowledge bases, registered adapters), starts `hybrid serve` with it on a free port (vLLM +
gateway; or asks `--url` if one runs already) and runs `hybrid eval app`'s library on each
evaluation, greedy, with the voice model fitted on the adapter's style data (its train.yaml)
against the cached base replies (e.g. examples/ceo-report-qa/eval/base_replies.jsonl, made by
bench/style_baseline.py). Writes bench/results/app_eval_EXAMPLE.{json,md} (one evaluation) or
app_eval_EXAMPLE_APP.{json,md} (one per app under test); the report folders (chart, blind A/B
sheet and key) go to artifacts/EXAMPLE/app-eval/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import example_config, gateway, machine, write_results  # noqa: E402


def example_demo(name: str):
    """The `DEMO` of examples/NAME/run.py (its apps, adapters and evaluations)."""
    import importlib.util

    path = REPO / "examples" / name / "run.py"
    if not path.is_file():
        raise SystemExit(f"no example {name!r}: {path} not found")
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEMO


def without_binding(config: Path, folder: Path) -> Path:
    """A copy of the serving config whose apps are copies with `generation.bind_figures`
    false (written into `folder`); everything else (store, registry, engine) is shared."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    apps = []
    for path in settings["apps"]:
        app = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        app.setdefault("generation", {})["bind_figures"] = False
        copy = folder / Path(path).name
        copy.write_text(yaml.safe_dump(app, sort_keys=False), encoding="utf-8")
        apps.append(str(copy))
    settings["apps"] = apps
    out = folder / "hybrid.yaml"
    out.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--example", default="ceo-report-qa", help="folder name in examples/")
    parser.add_argument("--work-dir", type=Path, help="default: artifacts/EXAMPLE")
    parser.add_argument("--url", help="a gateway serving the example's apps already")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (embeddings)")
    parser.add_argument("--concurrency", type=int, default=4, help="questions in flight")
    parser.add_argument(
        "--sampling",
        default="{}",
        help="JSON of sampling values over the apps' own, e.g. '{\"repetition_penalty\": 1.0}'",
    )
    parser.add_argument(
        "--no-binding",
        action="store_true",
        help="serve the apps with generation.bind_figures off (copies of their YAML files in "
        "WORK/no-binding/), to measure what figure binding does",
    )
    parser.add_argument(
        "--name", help="results file name in bench/results/ (default: app_eval_EXAMPLE[_APP])"
    )
    parser.add_argument(
        "--from-demo",
        action="store_true",
        help="store the evaluations run.py --quick made at its end (WORK/eval/APP/report.json) "
        "instead of serving and asking again",
    )
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="run examples/EXAMPLE/run.py --quick first when its work folder is missing",
    )
    args = parser.parse_args(argv)

    import torch

    from hybrid.evaluation.responders import GatewayResponder
    from hybrid.evaluation.runner import AppEvalSettings, evaluate_apps

    torch.set_num_threads(args.threads)
    demo = example_demo(args.example)
    if not demo.evaluations:
        raise SystemExit(f"example {args.example!r} has no labelled evaluation")
    work = (args.work_dir or REPO / "artifacts" / args.example).resolve()
    run_py = demo.folder / "run.py"
    config = None if args.url else example_config(run_py, work, args.prepare)
    if args.no_binding and args.url is None:
        config = without_binding(config, work / "no-binding")
    single = len(demo.evaluations) == 1
    runs = []
    for spec in demo.evaluations:
        name = args.name or f"app_eval_{args.example}" + ("" if single else f"_{spec.apps[0]}")
        if args.name and not single:
            name = f"{args.name}_{spec.apps[0]}"
        settings = AppEvalSettings(
            apps=spec.apps,
            questions=demo.folder / spec.questions,
            only=spec.only,
            output_dir=work / "app-eval" / spec.apps[0],
            sampling={"temperature": 0, "max_tokens": args.max_tokens, **json.loads(args.sampling)},
            style=(demo.folder / spec.style,),
            style_baseline=demo.folder / spec.style_baseline,
            concurrency=args.concurrency,
        )
        runs.append((name, settings))
    if args.no_binding and args.url is not None:
        raise SystemExit("--no-binding serves the apps itself: leave out --url")
    if args.from_demo:
        from hybrid.evaluation.report import summary_line

        reports = []
        for name, settings in runs:
            path = work / "eval" / settings.apps[0] / "report.json"
            if not path.is_file():
                raise SystemExit(f"{path} not found: run {run_py.relative_to(REPO)} --quick first")
            report = json.loads(path.read_text(encoding="utf-8"))
            report["summary_line"] = summary_line(report["summaries"], report["comparisons"])
            report["source"] = f"{run_py.relative_to(REPO)} --quick: its evaluation step ({path})"
            reports.append((name, settings.model_copy(update={"output_dir": path.parent}), report))
        return store(reports)
    with gateway(config, args.url, work / "logs" / "app-eval-serve.log") as (url, ready_s):
        reports = [
            (name, settings, evaluate_apps(settings, GatewayResponder(url)))
            for name, settings in runs
        ]
    store(reports, serve_ready_s=ready_s, bind_figures=not args.no_binding)


def store(
    reports: list[tuple[str, object, dict]],
    serve_ready_s: float | None = None,
    bind_figures: bool = True,
) -> None:
    """bench/results/NAME.{json,md} and the README block of each (name, settings, report)."""
    from hybrid.evaluation.report import markdown

    for name, settings, report in reports:
        payload = {
            "machine": machine(),
            "serve_ready_s": serve_ready_s,
            "bind_figures": bind_figures,
            **report,
        }
        full = markdown(report)
        # The README shows the side-by-side summary; the questions one by one stay in the .md.
        summary = full.split("\n## Voice model")[0].split("\n", 1)[1].strip()
        path = write_results(name, payload, full, readme=summary.replace(f"{REPO}/", ""))
        print(report["summary_line"])
        print(
            f"results in {path} and {path.with_suffix('.md')}; A/B sheet in {settings.output_dir}"
        )


if __name__ == "__main__":
    main()
