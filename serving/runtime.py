"""Put the serving parts together: start (or attach to) the engines, open the adapter registry,
and build the gateway. `hybrid serve` calls this; so can any Python program.

Example::

    runtime = ServingRuntime(engine=EngineConfig(model="models/smollm2"), registry_root=Path("reg"))
    runtime.start()                     # blocks until vLLM is ready (~60-80 s on a CPU)
    uvicorn.run(create_app(runtime.gateway_state()), port=8080)
    runtime.stop()
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from serving.adapters import AdapterRegistry, describe_base
from serving.adapters.errors import AdapterNotFound
from serving.adapters.files import adapter_digest
from serving.adapters.leases import SharedLeases
from serving.adapters.manager import AdapterManager
from serving.engine import (
    EngineConfig,
    EngineProcess,
    EngineSet,
    MergedEngineConfig,
    RemoteEngineConfig,
)
from serving.engine.client import EngineClient, run_sync
from serving.engine.config import VLLM_LORA_RANKS
from serving.engine.merged import merged_problem
from serving.engine.merged_launch import MergedEngines, MergedLaunch
from serving.engine.protocol import ModelCard
from serving.engine.replicas import Replica
from serving.errors import EngineStartError, ServingError
from serving.gateway import ChatComposer, GatewayConfig, GatewayState
from serving.gateway.embeddings import EmbeddingProvider
from serving.gateway.metrics import GatewayMetrics

log = logging.getLogger("serving")


@dataclass(frozen=True)
class AttachedEngine:
    """A vLLM server another process supervises: a gateway worker's parent started it and
    restarts it; the worker only talks to it."""

    url: str
    api_key: str
    base_name: str
    max_lora_rank: int

    @classmethod
    def of(cls, process: EngineProcess) -> AttachedEngine:
        return cls(
            process.url,
            process.api_key,
            process.config.base_model_name,
            process.config.max_lora_rank,
        )


class ServingRuntime:
    def __init__(
        self,
        *,
        registry_root: Path,
        engine: EngineConfig | None = None,
        remote: RemoteEngineConfig | None = None,
        base_model: Path | None = None,
        gateway: GatewayConfig | None = None,
        preload: Sequence[str] = (),
        max_adapter_bytes: int | None = None,
        attached: AttachedEngine | None = None,
        merged: Sequence[MergedEngineConfig] = (),
        launch_merged: Sequence[MergedLaunch] = (),
    ):
        """
        Args:
            registry_root: folder of the adapter registry (created if missing).
            engine: a vLLM server to start and supervise.
            remote: vLLM servers that run already (alone or beside `engine`).
            base_model: the base model folder adapters are checked against; default
                `engine.model`. Required when only `remote` engines are given.
            gateway: gateway settings.
            preload: adapters (`name` or `name@version`) loaded at start, not on first use.
            max_adapter_bytes: largest adapter folder the registry accepts; default: computed
                from the base model's shapes at the engine's max rank.
            attached: an engine another process supervises (instead of `engine`).
            merged: merged engines that run already (each with its url), each serving one
                adapter version as its base model.
            launch_merged: merged engines to start beside `engine` and supervise; one that
                does not start is logged and left out (its version takes the LoRA path).
        """
        if engine is None and remote is None and attached is None:
            raise ValueError("configure an engine to start (engine) or to attach to (remote)")
        base = base_model or (Path(engine.model) if engine is not None else None)
        if base is None or not (base / "config.json").is_file():
            raise ValueError(
                f"base model folder {base} has no config.json; set base_model to the folder of "
                "the model the engines serve (adapters are checked against it)"
            )
        self.engine_config = engine
        self.remote = remote
        self.base_model = base
        # Absolute: the registry's folders are sent to engines, which resolve a relative path
        # from their own working directory (a remote one on another machine).
        self.registry_root = Path(registry_root).expanduser().absolute()
        self.gateway_config = gateway or GatewayConfig()
        self.preload = tuple(preload)
        self.max_adapter_bytes = max_adapter_bytes
        self.process: EngineProcess | None = None
        self.base_name: str | None = engine.base_model_name if engine is not None else None
        self.attached = attached
        if attached is not None:
            self.base_name = attached.base_name
        self._registry: AdapterRegistry | None = None
        self.merged = tuple(merged)
        unstarted = [m.engine_name for m in self.merged if m.url is None]
        if unstarted:
            raise ValueError(
                f"merged engines for {', '.join(unstarted)} have no url; pass them in "
                "launch_merged with the engine config to start them"
            )
        self.launched = MergedEngines(launch_merged)
        self._digests: dict[str, str] = {}
        """engine name -> digest of its registered files, for each merged engine's version."""

    def start(self) -> None:
        """Start the supervised engine and the merged engines to launch, at the same time, and
        block until each is ready or has failed; check the remote and merged ones.

        A merged engine that fails to start does not fail the start: it is logged in one line
        and left out, so its version takes the LoRA path.

        Raises:
            EngineStartError: the supervised vLLM failed to start (the message quotes its log).
            ServingError: remote engines unreachable or serving another base model; a merged
                engine's version is not registered, or the engine serves other weights.
        """
        self._check_merged_versions()  # before a supervised engine's minute of start-up
        starting = self.launched.begin()  # beside the supervised engine's start
        try:
            if self.engine_config is not None:
                self.process = EngineProcess(self.engine_config).start()
            if self.remote is not None:
                self._check_remote()
            for thread in starting:
                thread.join()
        except BaseException:
            self.launched.stop()
            raise
        self._check_merged_engines()

    def merged_engines(self) -> list[MergedEngineConfig]:
        """The merged engines requests may go to: those configured with a url, then those this
        runtime started (after `start`, the ones that got ready)."""
        return [*self.merged, *self.launched.started()]

    def _check_merged_versions(self) -> None:
        for merged in [*self.merged, *(launch.entry for launch in self.launched.launches)]:
            name = merged.engine_name
            try:
                adapter = self.registry().resolve(name).adapter
            except AdapterNotFound as exc:
                where = merged.url or "the merged engine to start"
                raise ServingError(
                    f"merged_engines: {where} is configured for {name}, which is not "
                    f"registered ({exc}); register and merge that version, or fix `version`"
                ) from None
            self._digests[name] = adapter_digest(adapter.path)

    def _check_merged_engines(self) -> None:
        """A merged engine that serves other weights is refused; one that does not answer yet
        is only logged: requests take the LoRA path until it answers and checks out."""
        for merged in self.merged:
            try:
                cards = self._models(merged.url, merged.api_key)
            except ServingError as exc:
                log.warning(
                    "merged engine not reachable yet, %s takes the LoRA path: %s",
                    merged.engine_name,
                    exc,
                )
                continue
            problem = merged_problem(
                cards, merged.engine_name, self._digests[merged.engine_name], merged.url
            )
            if problem is not None:
                raise ServingError(problem)

    @staticmethod
    def _models(url: str, api_key: str | None) -> list[ModelCard]:
        """GET /v1/models of one engine, through the engine client (raises ServingError)."""

        async def ask() -> list[ModelCard]:
            async with EngineClient(url, api_key=api_key, timeout_s=10) as client:
                return await client.list_models()

        return run_sync(ask())

    def _check_remote(self) -> None:
        assert self.remote is not None
        for url in self.remote.urls:
            try:
                bases = [c.id for c in self._models(url, self.remote.api_key) if not c.is_adapter]
            except ServingError as exc:  # names the URL, the reason and the fix
                raise ServingError(f"remote engine: {exc}") from None
            if self.base_name is None and bases:
                self.base_name = bases[0]
            if self.base_name not in bases:
                raise ServingError(
                    f"engine {url} serves {bases}, not '{self.base_name}'; all engines must "
                    "serve the same base model under the same name"
                )

    def max_model_len(self) -> int | None:
        """The context window the engine reports for the base model (after start)."""
        if self.process is not None:
            url, key = self.process.url, self.process.api_key
        elif self.attached is not None:
            url, key = self.attached.url, self.attached.api_key
        elif self.remote is not None:
            url, key = self.remote.urls[0], self.remote.api_key
        else:
            return None
        try:
            cards = self._models(url, key)
        except ServingError:
            return None
        return next((c.max_model_len for c in cards if c.id == self.base_name), None)

    def registry(self) -> AdapterRegistry:
        """The adapter registry, checking against the served base and the engine's max rank."""
        if self._registry is None:
            if self.engine_config is not None:
                rank = self.engine_config.max_lora_rank
            elif self.attached is not None:
                rank = self.attached.max_lora_rank
            else:
                rank = max(VLLM_LORA_RANKS)
            self._registry = AdapterRegistry(
                self.registry_root,
                describe_base(self.base_model),
                rank,
                max_bytes=self.max_adapter_bytes,
            )
        return self._registry

    def gateway_state(
        self,
        composers: Sequence[ChatComposer] = (),
        metrics: GatewayMetrics | None = None,
        embedders: Sequence[EmbeddingProvider] = (),
        shared_leases: SharedLeases | None = None,
        worker: int | None = None,
    ) -> GatewayState:
        """The gateway's state, over the started engines; `embedders` serve /v1/embeddings;
        `shared_leases` and `worker` (its index) when this is one of several gateway worker
        processes; without `shared_leases`, `gateway.lease_dir` (when set) gives them."""
        if self.base_name is None:
            raise EngineStartError("call start() before gateway_state()")
        registry = self.registry()
        replicas = []
        if self.attached is not None:
            replicas.append(Replica(EngineClient(self.attached.url, api_key=self.attached.api_key)))
        if self.process is not None or self.remote is not None:
            replicas += EngineSet.build(supervised=self.process, remote=self.remote).replicas
        routed = self.merged_engines()
        if any(m.engine_name not in self._digests for m in routed):
            self._check_merged_versions()
        merged = [
            Replica(
                EngineClient(m.url, api_key=m.api_key, timeout_s=m.timeout_s),
                serves=m.engine_name,
                digest=self._digests[m.engine_name],
                healthy=False,  # until its served names are checked (GatewayState.start)
            )
            for m in routed
            if m.url is not None
        ]
        engines = EngineSet(replicas, merged)
        if shared_leases is None and self.gateway_config.lease_dir is not None:
            shared_leases = SharedLeases(self.gateway_config.lease_dir)
        manager = AdapterManager(
            registry,
            engines,
            self.base_name,
            drain_timeout_s=self.gateway_config.drain_timeout_s,
            unload_previous=self.gateway_config.unload_previous_on_promote,
            shared=shared_leases,
        )
        return GatewayState.build(
            self.gateway_config.per_worker(),
            manager,
            composers=composers,
            preload=self.preload,
            metrics=metrics,
            embedders=embedders,
            worker=worker,
        )

    def stop(self) -> None:
        """Stop the engines this runtime started: the merged ones, then the supervised one."""
        self.launched.stop()
        if self.process is not None:
            self.process.stop()


def run_gateway(state: GatewayState) -> None:
    """Serve the gateway with uvicorn until SIGINT or SIGTERM, then return normally (after a
    graceful shutdown), so the caller can stop the engine it started."""
    from serving.gateway import create_app

    config = state.config
    GracefulServer(
        uvicorn.Config(
            create_app(state),
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
        )
    ).run()


class GracefulServer(uvicorn.Server):
    """A uvicorn server that does not re-raise the stop signal after its graceful shutdown
    (plain uvicorn does, which would kill the process before it could stop vLLM)."""

    @contextlib.contextmanager
    def capture_signals(self):
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
