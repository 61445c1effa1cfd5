"""`hybrid.serve(config)`: start (or attach to) vLLM and serve the OpenAI-compatible gateway
with the config's apps until Ctrl-C or SIGTERM; what `hybrid serve` runs.

    import hybrid
    from hybrid.config import load_config

    hybrid.serve(load_config(Path("hybrid.yaml")))

The module is not named `serve.py`: a submodule named like the function would replace
`hybrid.serve` (the function) by the module as soon as it is imported.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from typing import TYPE_CHECKING

from hybrid.config import HybridConfig
from hybrid.errors import UsageError
from hybrid.runtime import DEFAULT_MAX_MODEL_LEN

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger(__name__)

SERVED_RETRIEVAL_THREADS = 1
"""Torch threads for retrieval (query embeddings) in `hybrid serve` when it runs vLLM itself:
vLLM-CPU binds its worker's threads to every core but the one it reserves for its own API
server and engine core (one on x86), so the gateway's query embeddings get at most that core.
Measured as the gateway runs them, beside a process holding core 0 (bench/embed_threads.py):
one thread stays within a few tens of ms, torch's default (one per core) collapses."""


def serve(
    settings: HybridConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    console: Console | None = None,
) -> None:
    """Serve `settings` (engine, apps, adapters, gateway) until interrupted; engines it
    started are stopped on the way out.

    Args:
        settings: The whole config (`hybrid.config.load_config`).
        host, port: Override `settings.gateway`'s listen address.
        workers: Override `settings.gateway.workers` (gateway processes sharing the port; the
            engine is started once, here, and every worker attaches to it: hybrid/workers.py).
        console: Where progress goes (default: a rich console on stderr).

    Raises:
        ConfigError: an app or the engine is misconfigured (checked before the engine starts
            where the served model's name is known).
        ServingError: the engine did not start.
    """
    from rich.console import Console

    from hybrid.apps.budget import PromptBudget
    from hybrid.apps.embeddings import KnowledgeBaseEmbeddings
    from hybrid.runtime import build_runtime
    from serving.gateway import GatewayMetrics
    from serving.runtime import run_gateway

    overrides = {"host": host, "port": port, "workers": workers}
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        gateway = settings.gateway.model_validate({**settings.gateway.model_dump(), **changes})
        settings = settings.model_copy(update={"gateway": gateway})
    console = console or Console(stderr=True)
    signal.signal(signal.SIGTERM, _interrupt)  # stop vLLM too, also while it starts
    merging = any(m.started_here for m in settings.merged_engines)
    with console.status(f"preparing the base model{' and merged engines' if merging else ''} ..."):
        runtime = build_runtime(settings)  # merges what merged_engines start (once, cached)
    metrics = GatewayMetrics()
    # The context window is assumed to be the embedded default's until the engine reports its own.
    budget = PromptBudget(runtime.base_model, DEFAULT_MAX_MODEL_LEN)

    def apps() -> list:
        composers = app_composers(settings, runtime, metrics, budget)
        if composers and runtime.engine_config is not None:  # vLLM on this machine: a core is ours
            use_retrieval_threads(SERVED_RETRIEVAL_THREADS)
        return composers

    # Apps are checked before a supervised engine starts (a minute), so a typo fails at once;
    # with remote engines only, the served base model's name is known after attaching.
    composers = apps() if runtime.base_name is not None else None
    single = settings.gateway.workers == 1  # else each worker prepares its own apps
    preparing = prepare_apps(composers if single else None)  # beside the engine's start
    try:
        engine = runtime.engine_config
        what = f"vLLM for {engine.base_model_name}" if engine else "the remote engines"
        if runtime.launched.launches:
            what += f" and {len(runtime.launched.launches)} merged engine(s)"
        started = time.monotonic()
        with console.status(f"starting {what} (a CPU needs about a minute) ..."):
            runtime.start()
        console.print(f"engine ready after {time.monotonic() - started:.0f} s")
        report_merged(runtime, console)
        if not single:
            from hybrid.workers import serve_workers

            if composers is None:
                apps()  # the config's apps are checked here, not once per worker
            # The workers route to the merged engines started here, as to ones that run already.
            routed = settings.model_copy(update={"merged_engines": tuple(runtime.merged_engines())})
            serve_workers(routed, runtime, console)
            return
        budget.max_model_len = runtime.max_model_len() or DEFAULT_MAX_MODEL_LEN
        if composers is None:
            composers = apps()
            preparing = prepare_apps(composers)
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


def report_merged(runtime, console: Console) -> None:
    """One line per merged engine `runtime` started or tried to (a failure is logged above)."""
    for name, process in runtime.launched.processes.items():
        if process.state == "ready":
            console.print(
                f"merged engine for {name} ready at {process.url} (log: {process.log_path})"
            )
        else:
            console.print(f"merged engine for {name} not running: {name} takes the LoRA path")


def app_composers(settings: HybridConfig, runtime, metrics, budget) -> list:
    """The config's apps as one chat composer (none without apps), over `runtime`'s registry.

    Raises:
        ConfigError: an app is misconfigured.
    """
    from hybrid.apps.loading import app_composer
    from retrieval import KnowledgeBaseCatalog

    if not settings.apps:
        return []
    assert runtime.base_name is not None
    catalog = KnowledgeBaseCatalog(settings.store)
    registry = runtime.registry()
    return [app_composer(settings.apps, catalog, registry, runtime.base_name, metrics, budget)]


def use_retrieval_threads(threads: int) -> None:
    """Run retrieval's torch work on `threads` threads from now on. Called after the knowledge
    bases are open (loading an embedder applies its own `threads` setting) and before the
    threads that embed queries start: torch gives a thread the count set when it first runs
    torch work, so the gateway's worker threads (`asyncio.to_thread`) take this one."""
    from retrieval.embedders import set_threads

    set_threads(threads)
    log.info("retrieval runs torch on %d thread(s) beside the engine", threads)


def prepare_apps(composers) -> threading.Thread:
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


def new_api_key(name: str, models: list[str] | None = None, *, admin: bool = False):
    """A random gateway key and the config entry that stores only its hash.

    Returns:
        (key, section, entry): the key to hand out once, `api_keys` or `admin_keys`, and the
        mapping to add under `gateway.auth.<section>`.

    Raises:
        UsageError: an admin key limited to models (admin keys may use every model).
    """
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
    return key, "admin_keys" if admin else "api_keys", entry
