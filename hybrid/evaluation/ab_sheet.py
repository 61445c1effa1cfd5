"""A blind A/B sheet: two apps' answers per question, shown as A and B in a seeded random order,
in one self-contained HTML file (nothing loaded from elsewhere); which app is A is only in the
separate answer key (JSON). A rater picks A, B or "same" per question, adds a note, and copies
the ratings the page shows as JSON (keyed like the answer key)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from html import escape
from pathlib import Path

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
.q{border-top:1px solid #ccc;padding:1rem 0}.ctx{color:#666;font-size:.9em;margin:.3rem 0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.ans{background:#f6f6f6;padding:.7rem;
border-radius:6px;white-space:pre-wrap}.rate label{margin-right:1rem}
"""


# Inline, no network: the rater's choices as JSON to copy into a file beside the key.
_COLLECT = """<div class="q"><button type="button" onclick="collect()">Show my ratings</button>
<textarea id="ratings" rows="6" style="width:100%" readonly></textarea></div><script>
function collect(){const r={};document.querySelectorAll('.q[id]').forEach(q=>{
const c=q.querySelector('input[type=radio]:checked');const n=q.querySelector('input[type=text]');
r[q.id.slice(1)]={choice:c?c.value:null,note:n?n.value:''}});
document.getElementById('ratings').value=JSON.stringify(r,null,1)}</script>"""


def build_ab_sheet(
    questions: Sequence[dict], first: str, second: str, seed: int = 0
) -> tuple[str, dict]:
    """(html, key). `questions`: {"id", "question", "messages", "answers": {app: text}}."""
    rng = random.Random(seed)
    key = {"seed": seed, "apps": [first, second], "questions": {}}
    blocks = []
    for q in questions:
        swap = rng.random() < 0.5
        a_app, b_app = (second, first) if swap else (first, second)
        key["questions"][str(q["id"])] = {"A": a_app, "B": b_app}
        prior = "".join(
            f'<div class="ctx">{escape(m["role"])}: {escape(m["content"])}</div>'
            for m in q.get("messages") or []
        )
        name = f"q{escape(str(q['id']))}"
        choices = "".join(
            f'<label><input type="radio" name="{name}" value="{v}"> {v}</label>'
            for v in ("A", "B", "same")
        )
        blocks.append(
            f'<div class="q" id="{name}"><h3>{escape(str(q["id"]))}. {escape(q["question"])}</h3>'
            f'{prior}<div class="pair">'
            f'<div><b>A</b><div class="ans">{escape(q["answers"][a_app])}</div></div>'
            f'<div><b>B</b><div class="ans">{escape(q["answers"][b_app])}</div></div></div>'
            f'<div class="rate">Better: {choices} '
            f'<input type="text" name="{name}-note" placeholder="note" size="40"></div></div>'
        )
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Blind A/B: {len(questions)} questions</title><style>{_STYLE}</style></head><body>"
        f"<h1>Blind A/B sheet</h1><p>{len(questions)} questions; two systems answered each. "
        "Which answer is better (right facts, cites its source, the intended voice)? "
        "The order of A and B is random per question; the key is in a separate file.</p>"
        + "".join(blocks)
        + _COLLECT
        + "</body></html>"
    )
    return html, key


def write_ab_sheet(
    folder: Path, questions: Sequence[dict], first: str, second: str, seed: int = 0
) -> tuple[Path, Path]:
    html, key = build_ab_sheet(questions, first, second, seed)
    sheet, key_file = folder / "ab_sheet.html", folder / "ab_key.json"
    sheet.write_text(html, encoding="utf-8")
    key_file.write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")
    return sheet, key_file
