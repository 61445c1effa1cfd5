"""An optional judge model (any OpenAI-compatible URL): is the answer right, given the gold
answer? Reported apart from the rule-based correctness and never required."""

from __future__ import annotations

import re

from hybrid.apps.generators import openai_client
from hybrid.errors import HybridError

PROMPT = """You grade answers. Question: {question}
Reference answer (accepted forms): {gold}
Answer to grade: {answer}

Does the answer state the reference answer correctly (same figures, units and meaning)?
Reply with one word: CORRECT or INCORRECT."""

_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


class Judge:
    def __init__(self, url: str, model: str, api_key: str | None = None, client=None):
        self.model = model
        self.url = url
        self.client = client or openai_client(url, api_key)

    def grade(self, question: str, gold: tuple[str, ...], answer: str) -> bool | None:
        """True/False per the judge; None when its reply has no verdict.

        Raises:
            HybridError: the judge cannot be reached or refuses the request.
        """
        import openai

        prompt = PROMPT.format(question=question, gold=" | ".join(gold), answer=answer)
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=8,
            )
        except openai.APIError as exc:
            raise HybridError(f"judge {self.model} at {self.url}: {exc}") from None
        found = _VERDICT.search(response.choices[0].message.content or "")
        return None if found is None else found[1].upper() == "CORRECT"
