"""App evaluation (`hybrid eval app`): labelled questions through apps, scored end to end.

`labelled` (the question file), `answers` (gold answers found in an answer, numbers
normalised), `responders` (where answers come from: apps in this process or a gateway),
`scoring` (per-question results and per-app summaries), `voice` (the style classifier),
`judge` (optional LLM judge), `report` (markdown, JSON, chart), `ab_sheet` (blind A/B HTML),
`runner` (the whole run, callable from Python).
"""
