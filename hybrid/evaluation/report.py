"""The report folder of `hybrid eval app`: report.json (everything), report.md (the summary
side by side, then every question), chart.png (the rates as grouped bars)."""

from __future__ import annotations

import json
from pathlib import Path

from hybrid.evaluation.comparison import comparison_line

CHART_METRICS = (
    ("correctness", "answer correct"),
    ("citation", "cites gold passage"),
    ("abstention", "abstention right"),
    ("voice", "voice score"),
)


def _pct(rate: dict) -> str:
    return "n/a" if rate["rate"] is None else f"{rate['rate']:.0%} ({rate['hits']}/{rate['n']})"


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def summary_line(summaries: list[dict], comparisons: list[dict] = ()) -> str:
    """One line per run, e.g. for `make demo`: correctness and voice of each app, then the
    first app against each other one (paired voice difference with its interval)."""
    parts = []
    for s in summaries:
        c = s["correctness"]
        voice = s["voice"]["mean"]
        parts.append(
            f"{s['app']}: correct {_pct(c)}, voice {_num(voice, '.2f')}, "
            f"abstention {_pct(s['abstention'])}"
        )
    parts += [comparison_line(c) for c in comparisons]
    return "; ".join(parts)


def markdown(report: dict) -> str:
    summaries = report["summaries"]
    apps = [s["app"] for s in summaries]
    rows = [
        ("answer correct", lambda s: _pct(s["correctness"])),
        ("correct, single-turn", lambda s: _pct(s["correctness_single_turn"])),
        ("correct, follow-ups", lambda s: _pct(s["correctness_multi_turn"])),
        ("judge says correct", lambda s: _pct(s["judge"])),
        ("cites the gold passage", lambda s: _pct(s["citation"])),
        ("was given the gold passage", lambda s: _pct(s["given_gold_passage"])),
        ("abstention right", lambda s: _pct(s["abstention"])),
        ("abstained when unanswerable", lambda s: _pct(s["abstained_when_unanswerable"])),
        ("abstained when answerable", lambda s: _pct(s["abstained_when_answerable"])),
        ("voice score (mean)", lambda s: _num(s["voice"]["mean"], ".3f")),
        ("grounding flag precision", lambda s: _num(s["grounding"]["precision"], ".2f")),
        ("grounding flag recall", lambda s: _num(s["grounding"]["recall"], ".2f")),
        ("latency mean / p95 (s)", lambda s: _latency(s["latency_s"])),
        ("prompt / completion tokens", lambda s: _tokens(s["tokens"])),
        ("completion tokens/s", lambda s: _num(s["tokens"]["completion_per_s"], ".1f")),
        ("errors", lambda s: str(s["errors"])),
    ]
    settings = report["settings"]
    lines = [
        f"# App evaluation: {', '.join(apps)}",
        "",
        f"Labelled set: `{settings['questions_file']}` ({settings['cases']} questions); "
        f"answers from {settings['mode']}; sampling {json.dumps(settings['sampling'])}.",
        "",
        "| | " + " | ".join(apps) + " |",
        "|---|" + "---|" * len(apps),
    ]
    lines += [f"| {name} | " + " | ".join(get(s) for s in summaries) + " |" for name, get in rows]
    if report.get("comparisons"):
        lines += [
            "",
            "Paired, question by question (bootstrap interval of the mean voice difference):",
        ]
        lines += ["", *[f"- {comparison_line(c)}" for c in report["comparisons"]]]
    voice = report.get("voice_validation")
    lines += ["", "## Voice model", ""]
    if voice:
        lines.append(
            f"Logistic regression on MiniLM embeddings: {voice['train_style']} style replies vs "
            f"{voice['train_base']} base answers for fitting; held out {voice['heldout_style']} "
            f"+ {voice['heldout_base']}: AUC {voice['auc']:.3f}, mean score "
            f"{voice['heldout_style_mean']:.2f} (style) vs {voice['heldout_base_mean']:.2f} (base)."
        )
        if any(c.get("voice_anchor") for c in report.get("comparisons", ())):
            lines += [
                "",
                "Anchor: answers about facts score lower than the style replies in any voice, so "
                "each comparison also scores the other app's own answers with one figure-free "
                "closing sentence of the style replies appended (drawn at random, seeded): the "
                "gain that 'the same facts, then one sentence of hers' shows on this scale.",
            ]
    else:
        lines.append("Not measured (give --style and --style-baseline).")
    lines += ["", "## Questions", ""]
    lines += ["| line | question | " + " | ".join(apps) + " |", "|---|---|" + "---|" * len(apps)]
    by_app = report["results"]
    for i, first in enumerate(by_app[apps[0]]):
        cells = []
        for app in apps:
            r = by_app[app][i]
            cells.append(_cell(r))
        q = first["question"].replace("|", "\\|")
        tag = " (follow-up)" if first["multi_turn"] else ""
        tag += " (unanswerable)" if not first["answerable"] else ""
        lines.append(f"| {first['line']} | {q}{tag} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(r: dict) -> str:
    if r["error"]:
        return f"error: {r['error'][:80]}"
    marks = []
    if r["correct"] is not None:
        marks.append("✓" if r["correct"] else "✗")
    if r["abstained"]:
        marks.append("abstained")
    if r["grounded"] is False:
        marks.append("flagged")
    if r["voice"] is not None:
        marks.append(f"voice {r['voice']:.2f}")
    text = " ".join(r["answer"].split())
    text = (text[:140] + "…") if len(text) > 140 else text
    return (" ".join(marks) + ": " + text).replace("|", "\\|")


def _latency(lat: dict) -> str:
    if lat["mean"] is None:
        return "n/a"
    return f"{lat['mean']:.2f} / {lat['p95']:.2f}"


def _tokens(tokens: dict) -> str:
    if tokens["completion"] is None:
        return "n/a"
    return f"{tokens['prompt']} / {tokens['completion']}"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = report["summaries"]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    width = 0.8 / max(1, len(summaries))
    for i, s in enumerate(summaries):
        values = []
        for key, _ in CHART_METRICS:
            value = s[key]["mean"] if key == "voice" else s[key]["rate"]
            values.append(value or 0.0)
        xs = [x + i * width for x in range(len(CHART_METRICS))]
        bars = ax.bar(xs, values, width, label=s["app"])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks([x + width * (len(summaries) - 1) / 2 for x in range(len(CHART_METRICS))])
    ax.set_xticklabels([label for _, label in CHART_METRICS])
    ax.set_ylim(0, 1.1)
    ax.set_title(f"{report['settings']['questions_file']}: {report['settings']['cases']} questions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "report.json",
        "markdown": folder / "report.md",
        "chart": folder / "chart.png",
    }
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    chart(report, paths["chart"])
    return paths
