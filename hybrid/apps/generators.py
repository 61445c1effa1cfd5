"""Where `App.chat` gets its text from when no Hybrid gateway runs: the base model and adapter
in this process (transformers + PEFT), or any OpenAI-compatible server (vLLM, a gateway)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import httpx

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


class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint; `model` is what that server calls the adapter."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s=600.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s

    def generate(self, messages: list[dict], sampling: dict) -> str:
        body = {**sampling, "model": self.model, "messages": messages}
        try:
            response = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout_s)
        except httpx.TransportError as exc:
            raise HybridError(f"no answer from {self.url} ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise HybridError(f"{self.url} answered {response.status_code}: {response.text[:300]}")
        return response.json()["choices"][0]["message"]["content"] or ""
