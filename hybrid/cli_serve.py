"""`hybrid serve [CONFIG]` and `hybrid keys new`."""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from hybrid.cli_state import State
from hybrid.config import load_config
from hybrid.errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048
"""Context window assumed until the engine reports its own."""

keys_app = typer.Typer(help="API keys for the gateway.", no_args_is_help=True)


def serve(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Argument(help="Config YAML (default: --config or ./hybrid.yaml).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (overrides the config).")] = None,
    port: Annotated[int | None, typer.Option(help="Gateway port (overrides the config).")] = None,
) -> None:
    """Start (or attach to) vLLM and serve the OpenAI-compatible gateway until Ctrl-C."""
    from rich.console import Console

    from hybrid.apps.budget import PromptBudget
    from hybrid.apps.embeddings import KnowledgeBaseEmbeddings
    from hybrid.apps.loading import app_composer
    from hybrid.runtime import build_runtime
    from retrieval import KnowledgeBaseCatalog
    from serving.gateway import GatewayMetrics
    from serving.runtime import run_gateway

    state: State = ctx.obj
    settings = load_config(config) if config is not None else state.config
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if changes:
        gateway = settings.gateway.model_validate({**settings.gateway.model_dump(), **changes})
        settings = settings.model_copy(update={"gateway": gateway})
    console = Console(stderr=True)
    signal.signal(signal.SIGTERM, _interrupt)  # stop vLLM too, also while it starts
    with console.status("preparing the base model ..."):
        runtime = build_runtime(settings)
    metrics = GatewayMetrics()
    budget = PromptBudget(runtime.base_model, DEFAULT_CONTEXT)

    def apps() -> list:
        if not settings.apps:
            return []
        assert runtime.base_name is not None
        catalog = KnowledgeBaseCatalog(settings.store)
        registry = runtime.registry()
        return [app_composer(settings.apps, catalog, registry, runtime.base_name, metrics, budget)]

    # Apps are checked before a supervised engine starts (a minute), so a typo fails at once;
    # with remote engines only, the served base model's name is known after attaching.
    composers = apps() if runtime.base_name is not None else None
    preparing = _prepare_apps(composers)  # beside the engine's start, not after it
    try:
        engine = runtime.engine_config
        what = f"vLLM for {engine.base_model_name}" if engine else "the remote engines"
        started = time.monotonic()
        with console.status(f"starting {what} (a CPU needs about a minute) ..."):
            runtime.start()
        console.print(f"engine ready after {time.monotonic() - started:.0f} s")
        budget.max_model_len = runtime.max_model_len() or DEFAULT_CONTEXT
        if composers is None:
            composers = apps()
            preparing = _prepare_apps(composers)
        with console.status("preparing the apps' retrieval (embedder, keyword indexes) ..."):
            preparing.join()
        pipelines = [p for c in composers for p in c.pipelines.values()]
        gateway_state = runtime.gateway_state(
            composers=composers, metrics=metrics, embedders=[KnowledgeBaseEmbeddings(pipelines)]
        )
        url = f"http://{settings.gateway.host}:{settings.gateway.port}"
        names = ", ".join(p for c in composers for p in c.pipelines) or "none"
        console.print(f"gateway at {url} (OpenAI base URL {url}/v1), apps: {names}; Ctrl-C stops")
        run_gateway(gateway_state)
    finally:
        runtime.stop()


def _prepare_apps(composers) -> threading.Thread:
    """Load the embedder and build each hybrid app's keyword index in a thread, so the first
    questions do not pay for it (about 25 s at 100k chunks). A store that is down now only
    logs: its apps answer 503 until it is back, as they would later."""
    from retrieval import RetrievalError

    def prepare() -> None:
        for composer in composers or ():
            for name, pipeline in composer.pipelines.items():
                try:
                    pipeline.prepare()
                except RetrievalError as exc:
                    log.warning("app %s: retrieval not prepared: %s", name, exc)

    thread = threading.Thread(target=prepare, name="prepare-apps", daemon=True)
    thread.start()
    return thread


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@keys_app.command("new")
def new_key(
    name: Annotated[str, typer.Option(help="Who holds the key (shown in logs and metrics).")],
    models: Annotated[
        list[str] | None, typer.Option("--model", help="Restrict to this model (repeatable).")
    ] = None,
    admin: Annotated[bool, typer.Option(help="An admin key (adapter routes, /metrics).")] = False,
) -> None:
    """Make a random key; print it once, and the config entry that stores only its hash."""
    from serving.gateway import hash_key

    if admin and models:
        raise UsageError(
            "an admin key may use every model, so --model does not apply to it; drop --admin "
            "for a key limited to those models"
        )
    key = "hy-" + secrets.token_urlsafe(32)
    entry: dict = {"name": name, "sha256": hash_key(key)}
    if models:
        entry["models"] = list(models)
    section = "admin_keys" if admin else "api_keys"
    typer.echo(f"key (shown once, give it to {name}): {key}")
    typer.echo(f"add to hybrid.yaml under gateway.auth.{section}:")
    typer.echo(yaml.safe_dump([entry], sort_keys=False).rstrip())
