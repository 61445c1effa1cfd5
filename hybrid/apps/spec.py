"""The app spec: one YAML file binds a knowledge base, an adapter and a persona.

Example (`examples/branded-chatbot/apps/brewbird.yaml`)::

    name: brewbird-support
    adapter: brewbird-voice            # `name` (current version) or `name@v2`; omit: base model
    knowledge_base: brewbird
    persona: You are Pip, the support assistant for BrewBird home coffee machines.
    retrieval: {top_k: 4, mode: hybrid, min_similarity: auto}
    generation: {max_tokens: 200, temperature: 0.2}
    no_context:
      message: I couldn't find that in BrewBird's guides. Happy brewing!
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from hybrid.config_files import Frozen, read_yaml_mapping, validate
from hybrid.errors import ConfigError
from retrieval import QueryOptions

APP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}[a-z0-9]")  # fullmatch: `$` allows "\n"

DEFAULT_TEMPLATE = """{persona}

Answer the user's question using only the numbered passages below. Cite each passage you use \
with its number in square brackets, like [1]. If the passages do not answer the question, say \
that the sources do not cover it.

Passages:
{context}"""
"""The system message of every app request. `hybrid train` with a `context:` section renders
training prompts with the same template, so what is trained is what is served."""

TEMPLATE_FIELDS = {"persona", "context"}


class RetrievalSettings(QueryOptions):
    """How an app searches: `retrieval.QueryOptions` (filters and min_score as there) with the
    app's own defaults and bounds, plus how follow-up questions are searched."""

    top_k: Annotated[int, Field(ge=1, le=20)] = 4
    """Passages put into the prompt (at most)."""
    mode: Literal["vector", "hybrid"] = "hybrid"
    """`hybrid` fuses BM25 keyword and vector rankings (better for names and figures)."""
    min_similarity: Annotated[float, Field(ge=-1, le=1)] | Literal["auto"] = "auto"
    """Minimum relevance (cosine similarity to the question); weaker passages are dropped, and
    with none left the app takes its `no_context` path instead of inventing an answer. `auto`
    (default): the knowledge base's own floor, how similar unrelated questions look to it
    (retrieval/relevance.py; measured in docs/retrieval.md); a number fixes it."""
    known_names_only: bool = True
    """No passages, so the `no_context` path, when the question names something no chunk of
    the knowledge base contains ("What was Apple's revenue?" against Northwind's report):
    similarity alone lets such questions through, and the model then answers with the
    passages' figures. Measured on the examples: off-topic questions stopped 12 -> 22 of 25
    (report), 21 -> 25 and 19 -> 23 (brands), no answerable labelled question turned away
    (docs/apps.md). `false` searches whatever the question names."""
    follow_ups: Literal["rule", "off"] = "rule"
    """How a follow-up ("And the year before?") is searched: `rule` puts the earlier user
    questions of the conversation before it when it reads as one (starts with "and"/"what
    about", refers back with "it"/"that" in few words, or has no content word of its own);
    `off` searches the last user message alone."""
    history_turns: Annotated[int, Field(ge=1, le=10)] = 2
    """With `follow_ups: rule`, how many earlier user questions a follow-up may take."""


class GenerationDefaults(Frozen):
    """Sampling defaults; a client's own values in the request win."""

    max_tokens: Annotated[int, Field(ge=1)] | None = 256
    temperature: Annotated[float, Field(ge=0, le=2)] | None = 0.3
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: tuple[str, ...] | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None
    """vLLM's repetition penalty (1.0 = off). It counts the prompt's tokens too, so it pushes
    the model away from the passages' own figures and words: on the CEO report example 1.1
    cost the adapter app 6 of 9 right answers (docs/apps.md). Leave it off for apps that
    answer from passages; `frequency_penalty` counts generated tokens only."""
    bind_figures: bool = False
    """Every number the answer writes must appear in its passages or the question, written as
    there (a grammar per request; see docs/apps.md). Not a sampling value: never sent as such."""
    enforce_answer_schema: bool = False
    """Decode every answer under the app's `answer_schema` (vLLM's structured output, sent as
    `structured_outputs: {json: schema}`) unless the client asks for a shape of its own
    (`response_format`, `structured_outputs` or tools). Needs `answer_schema`; cannot be combined
    with `bind_figures` (both are decode constraints on the same engine field)."""

    def as_body(self) -> dict:
        body = self.model_dump(exclude_none=True, exclude={"bind_figures", "enforce_answer_schema"})
        if "stop" in body:
            body["stop"] = list(body["stop"])
        return body


class NoContext(Frozen):
    """What the app does when retrieval finds nothing relevant."""

    mode: Literal["message", "generate"] = "message"
    """`message`: answer with `message` (no generation, nothing invented); `generate`: let the
    model answer with an empty context, told to say that the sources do not cover it."""
    message: str = "I could not find that in the sources I have."
    """The answer, in the app's voice, when nothing relevant is found."""


class Branding(Frozen):
    """How the playground and the chat widget show the app."""

    title: str | None = None
    color: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")] = "#2f6fed"
    greeting: str | None = None


class AppSpec(Frozen):
    """One app: knowledge from `knowledge_base`, voice from `adapter`, served as `name`."""

    name: str
    """The `model` clients send to use this app."""
    description: str = ""
    knowledge_base: str
    """The knowledge base answers are grounded in (`hybrid kb create/ingest`)."""
    adapter: str | None = None
    """Style adapter, `name` or `name@version` from the registry; None: the base model."""
    base_model: str | None = None
    """If set, the served base model's name must equal it (a guard against wrong deployments)."""
    persona: str
    """Who answers: the first line of the system message."""
    prompt_template: str = DEFAULT_TEMPLATE
    """System message layout with {persona} and {context} (the numbered passages)."""
    retrieval: RetrievalSettings = RetrievalSettings()
    generation: GenerationDefaults = GenerationDefaults()
    no_context: NoContext = NoContext()
    branding: Branding = Branding()
    answer_schema: dict | None = None
    """A JSON schema every generated answer must meet (a path to a .json file, relative to the
    app file, or the schema itself): each answer is checked and the verdict is reported in its
    `hybrid.answer_schema` field and counted in /metrics (hybrid/apps/answer_schema.py)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not APP_NAME.fullmatch(value):
            raise ValueError(
                "use 2-64 characters of a-z, 0-9, '.', '_' or '-', starting and ending with a "
                "letter or digit (e.g. acme-support)"
            )
        if "@" in value:
            raise ValueError("'@' is reserved for adapter versions")
        return value

    @field_validator("persona")
    @classmethod
    def _persona(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("persona is empty; say who answers, e.g. 'You are Pip, ...'")
        return value.strip()

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name}
        except ValueError as exc:
            raise ValueError(f"prompt_template is not a valid format string ({exc})") from None
        unknown = fields - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"prompt_template uses unknown field(s) {sorted(unknown)}; only {{persona}} and "
                "{context} exist (write literal braces as {{ and }})"
            )
        if "context" not in fields:
            raise ValueError("prompt_template has no {context}: the passages would never be shown")
        return value

    @field_validator("answer_schema")
    @classmethod
    def _answer_schema(cls, value: dict | None) -> dict | None:
        from hybrid.apps.answer_schema import schema_problem

        problem = None if value is None else schema_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _enforced_schema(self) -> AppSpec:
        if self.generation.enforce_answer_schema:
            if self.answer_schema is None:
                raise ValueError(
                    "generation.enforce_answer_schema needs an answer_schema to enforce"
                )
            if self.generation.bind_figures:
                raise ValueError(
                    "generation.enforce_answer_schema and generation.bind_figures cannot both be "
                    "on: each is a decode constraint on the engine's structured_outputs"
                )
        return self

    @property
    def title(self) -> str:
        return self.branding.title or self.name


def load_app_spec(path: Path) -> AppSpec:
    """Read and validate one app file.

    Raises:
        ConfigError: missing file, bad YAML, or every validation problem at once.
    """
    raw = read_yaml_mapping(path, kind="app file", what="app settings")
    if "answer_schema" in raw:
        from hybrid.apps.answer_schema import read_schema

        try:
            raw["answer_schema"] = read_schema(raw["answer_schema"], path.parent)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return validate(AppSpec, raw, str(path))


def load_app_specs(paths: list[Path]) -> list[AppSpec]:
    """Several app files; names must be unique. Every file's problems are reported together."""
    specs, problems = [], []
    for path in paths:
        try:
            specs.append(load_app_spec(path))
        except ConfigError as exc:
            problems.append(str(exc))
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
    problems += [
        f"app name '{n}' is used by {c} files; names must be unique"
        for n, c in seen.items()
        if c > 1
    ]
    if problems:
        raise ConfigError("; ".join(problems))
    return specs
