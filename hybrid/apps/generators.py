"""Where `App.chat` gets its text from when no Hybrid gateway runs: the base model and adapter
in this process (transformers + PEFT), or any OpenAI-compatible server (vLLM, a gateway)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from hybrid.errors import HybridError


class Generator(Protocol):
    def generate(self, messages: list[dict], sampling: dict) -> str: ...


class LocalGenerator:
    """The base model (with the adapter, if any) loaded in this process. Slow on a CPU but needs
    no server; the same chat template vLLM uses renders the prompt."""

    def __init__(self, base_model: Path, adapter: Path | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()
        self._compiler = None

    def generate(self, messages: list[dict], sampling: dict) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        temperature = float(sampling.get("temperature") or 0.0)
        kwargs: dict = {"max_new_tokens": int(sampling.get("max_tokens") or 256)}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
            if sampling.get("top_p"):
                kwargs["top_p"] = float(sampling["top_p"])
        else:
            kwargs["do_sample"] = False
        if sampling.get("repetition_penalty"):
            kwargs["repetition_penalty"] = float(sampling["repetition_penalty"])
        if sampling.get("seed") is not None:
            torch.manual_seed(int(sampling["seed"]))
        if sampling.get("structured_outputs"):
            kwargs["logits_processor"] = [self._constraint(sampling["structured_outputs"])]
        with torch.no_grad():
            out = self.model.generate(
                **ids,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                **kwargs,
            )
        text = self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        for stop in sampling.get("stop") or []:
            text = text.split(stop)[0]
        return text.strip()

    def _constraint(self, structured: dict):
        """vLLM's `structured_outputs` (grammar, regex or json) as a transformers logits
        processor, with xgrammar, the library vLLM's default backend uses: the same grammar
        gives the same constraint in both paths (an app's figure binding, for one)."""
        import xgrammar
        import xgrammar.contrib.hf

        if self._compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.model.config.vocab_size
            )
            self._compiler = xgrammar.GrammarCompiler(info, max_threads=1)
        kinds = {k: v for k, v in structured.items() if v is not None}
        try:
            if isinstance(kinds.get("grammar"), str):
                compiled = self._compiler.compile_grammar(kinds["grammar"])
            elif isinstance(kinds.get("regex"), str):
                compiled = self._compiler.compile_regex(kinds["regex"])
            elif kinds.get("json") is not None:
                schema = kinds["json"]
                compiled = self._compiler.compile_json_schema(
                    schema if isinstance(schema, str) else json.dumps(schema)
                )
            else:
                raise HybridError(
                    f"in-process generation supports structured_outputs with grammar, regex or "
                    f"json; got {sorted(kinds)}"
                )
        except RuntimeError as exc:
            raise HybridError(f"structured_outputs does not compile: {exc}") from None
        return xgrammar.contrib.hf.LogitsProcessor(compiled)


def openai_client(url: str, api_key: str | None = None, timeout_s: float = 600.0):
    """The official `openai` client for an OpenAI-compatible server at `url` (given with or
    without its `/v1`); it sends `api_key` as the Bearer header. No retries: an evaluation or
    an app call reports a failure rather than hiding it."""
    import openai

    base = url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    return openai.OpenAI(base_url=base, api_key=api_key or "none", max_retries=0, timeout=timeout_s)


class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint (vLLM, a gateway); `model` is what that server calls
    the adapter (or the base model). `last_usage` holds the last reply's token counts."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        *,
        client=None,
    ):
        self.client = client or openai_client(base_url, api_key, timeout_s)
        self.model = model
        self.last_usage: dict | None = None

    def generate(self, messages: list[dict], sampling: dict) -> str:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, extra_body=sampling or None
            )
        except openai.APIError as exc:
            raise HybridError(f"engine model '{self.model}': {one_line(exc)}") from None
        self.last_usage = usage_dict(response.usage)
        return response.choices[0].message.content or ""


def usage_dict(usage) -> dict | None:
    """An OpenAI response's usage as {prompt_tokens, completion_tokens} (None without one)."""
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


def one_line(exc: Exception) -> str:
    """An exception as `Type: message` on one line of at most ~300 characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
