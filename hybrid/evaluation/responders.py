"""Where `hybrid eval app` gets answers: apps run in this process (`App.chat`: retrieval, the
app's prompt, citations and grounding here; text from an OpenAI-compatible engine or from the
base model and adapter loaded with transformers), or a running gateway asked through the
official `openai` client (model = the app's name; the response's `hybrid` field)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hybrid.apps.generators import OpenAIGenerator, one_line, openai_client, usage_dict
from hybrid.errors import HybridError, UsageError


@dataclass(frozen=True)
class AppReply:
    """One app's answer to one labelled question, with what the app reported about it."""

    text: str
    notes: dict
    """The response's `hybrid` field: citations, sources, grounding, no_context."""
    latency_s: float
    usage: dict | None = None
    """prompt_tokens / completion_tokens when the engine reported them."""
    error: str | None = None


class Responder(Protocol):
    def apps(self) -> list[str]: ...

    def no_context_message(self, app: str) -> str | None: ...

    def reply(self, app: str, messages: list[dict], sampling: dict) -> AppReply: ...


class GatewayResponder:
    """A running Hybrid gateway (`hybrid serve`): each app is a `model`."""

    thread_safe = True
    """The openai client may be shared by threads: questions can be asked concurrently."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 600.0, client=None):
        self.url = url.rstrip("/")
        self.client = client or openai_client(url, api_key, timeout_s)
        self._apps: dict[str, dict] | None = None

    def _listing(self) -> dict[str, dict]:
        import openai

        if self._apps is None:
            try:
                models = self.client.models.list().data
            except openai.APIError as exc:
                raise HybridError(f"cannot list the models of {self.url}: {exc}") from None
            self._apps = {
                m.id: (m.model_extra or {}).get("hybrid") or {}
                for m in models
                if ((m.model_extra or {}).get("hybrid") or {}).get("kind") == "app"
            }
        return self._apps

    def apps(self) -> list[str]:
        return sorted(self._listing())

    def no_context_message(self, app: str) -> str | None:
        return None  # the gateway says so itself: `hybrid.no_context`

    def reply(self, app: str, messages: list[dict], sampling: dict) -> AppReply:
        import openai

        started = time.perf_counter()
        try:
            response = self.client.chat.completions.create(
                model=app, messages=messages, extra_body=sampling or None
            )
        except openai.APIError as exc:
            return AppReply("", {}, time.perf_counter() - started, error=one_line(exc))
        latency = time.perf_counter() - started
        text = response.choices[0].message.content or ""
        notes = (response.model_extra or {}).get("hybrid") or {}
        return AppReply(text, notes, latency, usage_dict(response.usage))


@dataclass
class InProcessResponder:
    """Apps run here with `App.chat`; `apps` maps each app's name to its `App`."""

    by_name: dict = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    """How each app was named (a name or an app file) -> its name."""

    def apps(self) -> list[str]:
        return sorted(self.by_name)

    def apps_in_order(self, given: Sequence[str]) -> list[str]:
        return [self.aliases.get(g, g) for g in given]

    def no_context_message(self, app: str) -> str | None:
        spec = self.by_name[app].spec
        return spec.no_context.message if spec.no_context.mode == "message" else None

    def reply(self, app: str, messages: list[dict], sampling: dict) -> AppReply:
        target = self.by_name[app]
        generator = target.generator
        if hasattr(generator, "last_usage"):
            generator.last_usage = None
        started = time.perf_counter()
        try:
            answer = target.chat(messages, **sampling)
        except HybridError as exc:
            return AppReply("", {}, time.perf_counter() - started, error=str(exc))
        latency = time.perf_counter() - started
        usage = getattr(generator, "last_usage", None)
        return AppReply(answer.text, answer.notes.to_dict(), latency, usage)


def app_files_by_name(paths: Sequence[Path]) -> dict[str, Path]:
    """App name -> file, over app files and folders of app files.

    Raises:
        ConfigError: an app file is invalid, or two files use one name.
    """
    from hybrid.apps.loading import app_files
    from hybrid.apps.spec import load_app_specs

    files = app_files(list(paths))
    specs = load_app_specs(files)
    return {spec.name: path for spec, path in zip(specs, files, strict=True)}


def in_process_responder(
    names: Sequence[str],
    app_paths: Sequence[Path],
    config,
    engine_url: str | None = None,
    engine_model: str | None = None,
    api_key: str | None = None,
) -> InProcessResponder:
    """The named apps (each a name from `app_paths` or an app YAML file) loaded here.

    With `engine_url`, text comes from that OpenAI-compatible engine: an app's adapter by its
    name, the base model as `engine_model` (default: the engine's model without a parent).
    Without, from the base model and adapters loaded in this process (slow on a CPU).

    Raises:
        UsageError: an app that is neither a known name nor an app file.
    """
    from hybrid.apps.app import App
    from hybrid.apps.spec import load_app_spec

    known = app_files_by_name(app_paths)
    chosen: dict[str, Path] = {}
    for name in names:
        path = Path(name)
        if name in known:
            chosen[name] = known[name]
        elif path.suffix in (".yaml", ".yml") and path.is_file():
            chosen[name] = path
        else:
            listed = ", ".join(sorted(known)) or "none (give app files with --apps)"
            raise UsageError(f"unknown app '{name}'; apps known: {listed}")
    client = None
    if engine_url is not None:
        client = openai_client(engine_url, api_key)
        if engine_model is None:
            engine_model = _engine_base_model(client, engine_url)
    by_name, aliases = {}, {}
    for given, path in chosen.items():
        generator = None
        if client is not None:
            model = load_app_spec(path).adapter or engine_model
            generator = OpenAIGenerator(engine_url, model, client=client)
        app = App.from_yaml(path, config=config, generator=generator)
        by_name[app.spec.name] = app
        aliases[given] = app.spec.name
    return InProcessResponder(by_name, aliases)


def _engine_base_model(client, url: str) -> str:
    import openai

    try:
        models = client.models.list().data
    except openai.APIError as exc:
        raise HybridError(f"cannot list the models of {url}: {one_line(exc)}") from None
    bases = [m.id for m in models if not (m.model_extra or {}).get("parent")]
    if not bases:
        raise HybridError(f"{url} lists no base model; name it with --engine-model")
    return bases[0]
