"""How an app lays out its prompt: the persona and numbered passages in the system message, then
the conversation. Pure functions, shared by serving and by context-aware training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hybrid.apps.spec import AppSpec
from retrieval import Citation, Hit

NO_PASSAGES = "(no passages: the sources do not cover this question)"


@dataclass(frozen=True)
class Passage:
    """A retrieved passage as the prompt numbers it ([1], [2], ...)."""

    number: int
    text: str
    file_name: str
    source: str
    page: int | None
    start_char: int
    end_char: int
    similarity: float

    @classmethod
    def of(cls, number: int, text: str, citation: Citation, similarity: float = 0.0) -> Passage:
        """A retrieved hit's or a stored chunk's text and citation as passage `number`."""
        return cls(
            number=number,
            text=text.strip(),
            file_name=citation.file_name,
            source=citation.source,
            page=citation.page,
            start_char=citation.start_char,
            end_char=citation.end_char,
            similarity=similarity,
        )

    @property
    def label(self) -> str:
        return f"{self.file_name}, p. {self.page}" if self.page else self.file_name

    def citation(self, snippet_chars: int = 240) -> dict:
        snippet = self.text if len(self.text) <= snippet_chars else self.text[:snippet_chars] + "…"
        return {
            "index": self.number,
            "source": self.source,
            "file_name": self.file_name,
            "page": self.page,
            "start_char": self.start_char,
            "end_char": self.end_char,
            "similarity": self.similarity,
            "snippet": snippet,
        }


def number_hits(hits: Sequence[Hit]) -> list[Passage]:
    return [
        Passage.of(i, hit.text, hit.citation, hit.similarity) for i, hit in enumerate(hits, start=1)
    ]


def format_context(passages: Sequence[Passage]) -> str:
    if not passages:
        return NO_PASSAGES
    return "\n\n".join(f"[{p.number}] ({p.label})\n{p.text}" for p in passages)


def system_prompt(spec: AppSpec, passages: Sequence[Passage]) -> str:
    return spec.prompt_template.format(persona=spec.persona, context=format_context(passages))


def build_messages(
    spec: AppSpec, passages: Sequence[Passage], conversation: Sequence[dict]
) -> list[dict]:
    """The app's system message first (a client's own system messages are appended to it, since
    chat templates take one), then the client's conversation."""
    system = system_prompt(spec, passages)
    client_system = [
        content_text(m.get("content"))
        for m in conversation
        if m.get("role") in ("system", "developer")
    ]
    extra = "\n\n".join(c for c in client_system if c.strip())
    if extra:
        system += "\n\n" + extra
    turns = [dict(m) for m in conversation if m.get("role") not in ("system", "developer")]
    return [{"role": "system", "content": system}, *turns]


def content_text(content: object) -> str:
    """A message's text: a string as it is, OpenAI content parts' text parts joined by
    newlines, anything else (null, images) as nothing."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
