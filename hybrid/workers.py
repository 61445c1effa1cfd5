"""Several gateway processes behind one port (`hybrid serve --workers N`).

The parent process starts (and supervises) the vLLM engine once, binds the gateway's socket
once, and spawns N worker processes that all accept on that socket (the kernel hands each new
connection to one of them). Each worker builds its own gateway over the same config, attached
to the parent's engine as to a remote one. What must agree across workers is shared through the
file system, with the kernel cleaning up after a killed worker:

- adapter leases (drain-on-promote and unload): lock files in one folder, `gateway.lease_dir`
  or a scratch folder of this host (serving/adapters/leases.py);
- the registry: already written under a lock and read lock-free (serving/adapters/registry.py);
- metrics: prometheus_client's multiprocess mode (memory-mapped files in one folder; `/metrics`
  on any worker sums them, and so does `in_flight` in `/admin/adapters`);
- admission: each worker admits `max_pending_requests // workers` (no shared counter to leak
  when a worker dies; the total never exceeds the limit).

A worker that dies after it started serving is started again; one that dies while starting
stops the whole gateway (its error is above, and would repeat). Only the parent reacts to
Ctrl-C (which a terminal sends to the whole process group): it stops each worker with one
SIGTERM, in order, and a worker still building its gateway does not die of KeyboardInterrupt
with a traceback; a worker whose parent dies gets SIGTERM from the kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.config import HybridConfig
from serving.errors import ServingError
from serving.runtime import GracefulServer

if TYPE_CHECKING:
    from rich.console import Console

    from serving.runtime import AttachedEngine, ServingRuntime

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0
"""How long a worker may take to finish its requests after SIGTERM before it is killed."""

_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve_workers(settings: HybridConfig, runtime: ServingRuntime, console: Console) -> None:
    """Serve `settings.gateway.workers` gateway processes on the gateway's address until
    interrupted (KeyboardInterrupt, which `hybrid.serve` raises on SIGTERM too), then stop
    them gracefully and return.

    Raises:
        ServingError: a worker failed while starting (e.g. an app's store is misconfigured).
    """
    import uvicorn

    from serving.runtime import AttachedEngine

    gateway = settings.gateway
    # Ctrl-C (and `kill -INT`) stop the workers even when this process was started with SIGINT
    # ignored (a background job, nohup): Python then leaves it ignored instead of raising
    # KeyboardInterrupt, and only this process handles it (the workers ignore it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    attached = AttachedEngine.of(runtime.process) if runtime.process is not None else None
    # Bound once, here: every worker accepts on this socket (uvicorn does the same for
    # `--workers`; its supervisor needs the app as an import string, ours is built from config).
    sock = uvicorn.Config(app=None, host=gateway.host, port=gateway.port).bind_socket()
    scratch = Path(tempfile.mkdtemp(prefix="hybrid-gateway-"))
    # Leases in `gateway.lease_dir` when set (shared with gateways on other hosts), else in
    # this host's scratch folder.
    leases, metrics = gateway.lease_dir or scratch / "leases", scratch / "metrics"
    leases.mkdir(parents=True, exist_ok=True)
    metrics.mkdir()
    context = multiprocessing.get_context("spawn")  # no threads or event loops copied by fork
    previous = os.environ.get(_METRICS_ENV)
    os.environ[_METRICS_ENV] = str(metrics)  # read by prometheus_client when a worker imports it

    def start(index: int) -> tuple[multiprocessing.Process, object]:
        ready = context.Event()
        process = context.Process(
            target=_worker_main,
            args=(settings, attached, index, sock, leases, metrics, ready),
            name=f"hybrid-gateway-{index}",
            daemon=False,
        )
        process.start()
        return process, ready

    workers = {i: start(i) for i in range(gateway.workers)}
    url = f"http://{gateway.host}:{sock.getsockname()[1]}"
    console.print(
        f"gateway at {url} (OpenAI base URL {url}/v1), {gateway.workers} worker processes; "
        "Ctrl-C stops"
    )
    try:
        while True:
            wait([p.sentinel for p, _ in workers.values()], timeout=1.0)
            for index, (process, ready) in list(workers.items()):
                if process.exitcode is None:
                    continue
                _forget_metrics(process.pid, metrics)
                if not ready.is_set():
                    raise ServingError(
                        f"gateway worker {index} exited with code {process.exitcode} while "
                        "starting; its error is printed above"
                    )
                log.warning(
                    "gateway worker %d (pid %d) exited with code %s; starting it again",
                    index,
                    process.pid,
                    process.exitcode,
                )
                time.sleep(0.5)
                workers[index] = start(index)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a normal stop, after the workers' own
        pass
    finally:
        _stop([p for p, _ in workers.values()])
        sock.close()
        if previous is None:
            os.environ.pop(_METRICS_ENV, None)
        else:
            os.environ[_METRICS_ENV] = previous
        shutil.rmtree(scratch, ignore_errors=True)


def _stop(processes: list[multiprocessing.Process]) -> None:
    """SIGTERM (graceful: uvicorn finishes the requests in flight), then SIGKILL after
    `STOP_GRACE_S`."""
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()


def _forget_metrics(pid: int | None, folder: Path) -> None:
    """A dead worker's gauges (requests in flight) no longer count."""
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid, str(folder))


def _worker_main(
    settings: HybridConfig,
    attached: AttachedEngine | None,
    index: int,
    sock: socket.socket,
    leases: Path,
    metrics_dir: Path,
    ready,
) -> None:
    """One worker process: build the gateway over the parent's engine, serve on `sock`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    with contextlib.suppress(OSError, AttributeError):  # Linux only: die with the parent
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    import uvicorn

    from hybrid.apps.budget import PromptBudget
    from hybrid.apps.embeddings import KnowledgeBaseEmbeddings
    from hybrid.runtime import DEFAULT_MAX_MODEL_LEN, build_runtime
    from hybrid.server import (
        SERVED_RETRIEVAL_THREADS,
        app_composers,
        prepare_apps,
        use_retrieval_threads,
    )
    from serving.adapters.leases import SharedLeases
    from serving.gateway import GatewayMetrics, create_app

    if os.environ.get(_METRICS_ENV) != str(metrics_dir):
        raise RuntimeError(f"{_METRICS_ENV} must be set before prometheus_client is imported")
    runtime = build_runtime(settings, attached)
    runtime.start()  # checks remote engines, if any; starts nothing
    metrics = GatewayMetrics(multiprocess_dir=metrics_dir, worker=index)
    budget = PromptBudget(runtime.base_model, runtime.max_model_len() or DEFAULT_MAX_MODEL_LEN)
    composers = app_composers(settings, runtime, metrics, budget)
    if composers and attached is not None:  # the parent's vLLM runs on this machine
        use_retrieval_threads(SERVED_RETRIEVAL_THREADS)
    prepare_apps(composers).join()  # before serving, as one process does
    pipelines = [p for c in composers for p in c.pipelines.values()]
    state = runtime.gateway_state(
        composers=composers,
        metrics=metrics,
        embedders=[KnowledgeBaseEmbeddings(pipelines)],
        shared_leases=SharedLeases(leases),
        worker=index,
    )
    ready.set()
    server = WorkerServer(uvicorn.Config(create_app(state), log_level="warning", access_log=False))
    server.run(sockets=[sock])


class WorkerServer(GracefulServer):
    """Stops gracefully on SIGTERM only: SIGINT (Ctrl-C, sent to the whole process group) is
    the parent's to handle."""

    @contextlib.contextmanager
    def capture_signals(self):
        previous = signal.signal(signal.SIGTERM, self.handle_exit)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
