"""An in-process stand-in for a vLLM OpenAI server (an ASGI app), for the gateway's fast unit
tests only; the same behaviour is tested against the real vLLM in test_gateway_vllm.py.

It answers like vLLM 0.32 on the routes the gateway uses (stream events as raw UTF-8 JSON): model listing with adapter parents,
runtime (un)loading with vLLM's error bodies, and chat/completions whose text names the model
that answered (`<model> says: <prompt>`), streamed word by word.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def vllm_error(status: int, message: str, type_: str = "BadRequestError") -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": status}}, status
    )


def as_text(content: object) -> str:
    """A message's content or a prompt as text: strings, lists of strings, text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(p.get("text", "")) if isinstance(p, dict) else as_text(p) or str(p) for p in content
        ]
        return " ".join(parts)
    return ""


class FakeEngine:
    def __init__(self, base: str = "base", delay_s: float = 0.0):
        self.base = base
        self.adapters: dict[str, str] = {}
        self.aliases: list[str] = []
        """Further served names of the base model (vLLM's `--served-model-name a b`)."""
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self.word_delay_s: float | None = None
        self.done_tail_s: float | None = None  # the body stays open this long after [DONE]
        """If set, the pause between streamed words (else `delay_s` spread over the answer)."""
        self.reply: str | None = None
        """If set, every answer is this text (else `<model> says: <prompt>`)."""
        self.connections: set[tuple[str, int]] = set()
        """The client addresses generation requests came from: one per TCP connection."""
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()
        engine = self

        @app.get("/health")
        async def health():
            return JSONResponse({})

        @app.get("/v1/models")
        async def models():
            data = [
                {"id": name, "root": "/models/base", "parent": None}
                for name in [engine.base, *engine.aliases]
            ]
            data += [
                {"id": n, "root": p, "parent": engine.base} for n, p in engine.adapters.items()
            ]
            return {"object": "list", "data": data}

        @app.post("/v1/load_lora_adapter")
        async def load(request: Request):
            body = await request.json()
            name, path = body["lora_name"], body["lora_path"]
            if name in engine.adapters:
                return vllm_error(400, f"The lora adapter '{name}' has already been loaded.")
            engine.adapters[name] = path
            return JSONResponse(f"Success: LoRA adapter '{name}' added successfully.")

        @app.post("/v1/unload_lora_adapter")
        async def unload(request: Request):
            name = (await request.json())["lora_name"]
            if engine.adapters.pop(name, None) is None:
                return vllm_error(
                    404, f"The lora adapter '{name}' cannot be found.", "NotFoundError"
                )
            return JSONResponse("ok")

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            engine._seen(request)
            body = await request.json()
            prompt = as_text(body["messages"][-1].get("content"))
            return await engine._answer(body, prompt, "chat.completion")

        @app.post("/v1/completions")
        async def completions(request: Request):
            engine._seen(request)
            body = await request.json()
            return await engine._answer(body, as_text(body["prompt"]), "text_completion")

        return app

    def _seen(self, request: Request) -> None:
        if request.client is not None:
            self.connections.add((request.client.host, request.client.port))

    async def _answer(self, body: dict, prompt: str, kind: str):
        self.requests.append(body)
        model = body["model"]
        if model not in (self.base, *self.aliases) and model not in self.adapters:
            return vllm_error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if (body.get("max_tokens") or 0) > 1000 or len(prompt.split()) > 1024:
            return vllm_error(400, "This model's maximum context length is 1024 tokens.")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words = (self.reply or f"{model} says: {prompt}").split(" ")
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(words),
            "total_tokens": len(prompt.split()) + len(words),
        }
        created = int(time.time())
        if not body.get("stream"):
            if kind == "chat.completion":
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": "stop",
                }
            else:
                choice = {"index": 0, "text": " ".join(words), "finish_reason": "stop"}
            return JSONResponse(
                {
                    "id": "x",
                    "object": kind,
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else kind
        include_usage = (body.get("stream_options") or {}).get("include_usage")

        async def events():
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                if kind == "chat.completion":
                    choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                else:
                    choice = {"index": 0, "text": piece, "finish_reason": None}
                chunk = {"id": "x", "object": chunk_kind, "created": created, "model": model}
                yield f"data: {json.dumps({**chunk, 'choices': [choice]}, ensure_ascii=False)}\n\n"
                if self.word_delay_s is not None:
                    await asyncio.sleep(self.word_delay_s)
                elif self.delay_s:
                    await asyncio.sleep(self.delay_s / len(words))
            if include_usage:
                chunk = {"id": "x", "object": chunk_kind, "created": created, "model": model}
                yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage}, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
            if self.done_tail_s is not None:
                await asyncio.sleep(self.done_tail_s)

        return StreamingResponse(events(), media_type="text/event-stream")
