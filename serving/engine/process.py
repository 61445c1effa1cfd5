"""A supervised vLLM OpenAI-compatible server: start, wait until ready, watch, restart, stop.

The server runs as `python -m vllm.entrypoints.openai.api_server` in its own session (process
group), because vLLM forks an engine-core and worker processes: stopping it means SIGTERM to the
server, then SIGKILL to the whole group after `stop_timeout_s`, until no member is left. The
environment is built explicitly for the child; this process's `os.environ` is never changed.

The supervisor knows nothing of adapters: whoever loads them into the server (an `EngineSet`,
through its `EngineClient`) hangs a hook on `on_launch` to load them again after a restart.
What to launch (argv, environment, checks, back-off) is plain functions in `launch.py`.

Why one module: ~490 lines; start, readiness, watchdog, restart policy and stop are one
state machine guarded by one lock and one lifecycle mutex; split across modules, each part
would reach into the others' state.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shlex
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import httpx

from serving.engine.config import EngineConfig
from serving.engine.launch import build_command, build_env, check_launchable, restart_delay
from serving.engine.logs import log_tail
from serving.engine.procgroup import (
    group_members,
    kill_group,
    pick_free_port,
    port_is_free,
    shared_memory_files,
    unlink_shared_memory,
)
from serving.engine.protocol import bearer, parse_models
from serving.errors import (
    EngineCrashed,
    EngineStartError,
    EngineUnavailable,
    ServingError,
)

log = logging.getLogger("serving.engine")

EngineState = Literal["stopped", "starting", "ready", "restarting", "failed"]

_POLL_S = 0.5
_PROBE_TIMEOUT_S = 5.0
_GROUP_GONE_TIMEOUT_S = 10.0
_LIVE_SUPERVISORS: weakref.WeakSet[EngineProcess] = weakref.WeakSet()


class _Stopping(Exception):
    """stop() was called while a start or restart was waiting."""


class EngineProcess:
    """Starts one vLLM server, keeps it alive and stops it without leaving a process behind.

    Example::

        with EngineProcess(EngineConfig(model="models/tiny", max_model_len=512)) as engine:
            openai.OpenAI(base_url=engine.openai_base_url, api_key="-")...

    Thread-safe: a watchdog thread checks the server every `watch_interval_s`; public methods
    may be called from any thread (from async code, through `asyncio.to_thread`).
    """

    def __init__(self, config: EngineConfig):
        self.config = config
        self._lock = threading.RLock()  # state, process handle
        self._changed = threading.Condition(self._lock)
        self._lifecycle = threading.Lock()  # one start/restart/stop at a time
        self._stopping = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._pgid: int | None = None
        self._port: int | None = None
        self._log_path: Path | None = config.log_file
        # Without a configured key the server gets a fresh secret: nobody but this process
        # (and the gateway it hands `api_key` to) can talk to it, not even on loopback.
        self._api_key = config.api_key or secrets.token_urlsafe(32)
        self._log_start = 0
        self._state: EngineState = "stopped"
        self._restart_times: list[float] = []
        self._restarts = 0
        self._failed_probes = 0
        self._last_error: ServingError | None = None
        self._ready_after_s: float | None = None
        self._watchdog: threading.Thread | None = None
        self._shm_files: set[str] = set()
        self._group_pids: list[int] = []
        self.on_launch: list[Callable[[], None]] = []
        """Called (in the supervisor's thread) after every start and restart, once the server
        answers and before it counts as ready, e.g. to load adapters again (`AdapterLedger`)."""
        _LIVE_SUPERVISORS.add(self)

    # ----------------------------------------------------------------- properties

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def url(self) -> str:
        """Server root, e.g. http://127.0.0.1:8000 (stable across restarts)."""
        if self._port is None:
            raise EngineUnavailable(
                "the engine has no address yet; call start() first", url="(not started)"
            )
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"http://{host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI clients (`url` + /v1)."""
        return self.url + "/v1"

    @property
    def api_key(self) -> str:
        """The key the server requires (`Authorization: Bearer ...`) on every route but
        /health: `config.api_key`, or a secret generated for this supervisor. Never logged."""
        return self._api_key

    @property
    def pid(self) -> int | None:
        """Pid of the current (or last) server process; also its process group id."""
        return self._pgid

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def restarts(self) -> int:
        """Restarts done since this supervisor was created."""
        return self._restarts

    @property
    def last_ready_s(self) -> float | None:
        """Seconds the last (re)start took until the server was ready."""
        return self._ready_after_s

    @property
    def last_error(self) -> ServingError | None:
        """Why the last start, restart or `on_launch` hook failed (None if all went well)."""
        return self._last_error

    def log_tail(self, max_lines: int = 12) -> str:
        """The end of the server log of the current (or last) start, cleaned for messages."""
        return log_tail(self._log_path, start=self._log_start, max_lines=max_lines)

    # ----------------------------------------------------------------- lifecycle

    def start(self, *, watch: bool = True) -> EngineProcess:
        """Start the server, block until /health and /v1/models answer, and call the
        `on_launch` hooks.

        Args:
            watch: run the watchdog thread that restarts the server when it dies.

        Raises:
            EngineStartError: the model folder or port is unusable, or vLLM exited or did not
                get ready within `startup_timeout_s` (the message quotes the end of its log).
        """
        with self._lifecycle:
            if self._proc is not None and self._proc.poll() is None:
                return self
            self._stopping.clear()
            check_launchable(self.config)
            if self._port is None:
                self._port = self.config.port or pick_free_port(self.config.host)
            self._set_state("starting")
            try:
                self._launch_and_wait()
            except (EngineStartError, _Stopping) as exc:
                self._terminate()
                self._set_state("failed" if isinstance(exc, EngineStartError) else "stopped")
                if isinstance(exc, EngineStartError):
                    self._last_error = exc
                    raise
                raise EngineStartError("the engine was stopped while starting") from None
            self._last_error = None
            self._run_launch_hooks()
            self._set_state("ready")
        if watch and (self._watchdog is None or not self._watchdog.is_alive()):
            self._watchdog = threading.Thread(
                target=self._watch, name=f"vllm-watchdog:{self._port}", daemon=True
            )
            self._watchdog.start()
        return self

    def stop(self) -> None:
        """Stop the server and every process it spawned."""
        self._stopping.set()
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=self.config.stop_timeout_s + _GROUP_GONE_TIMEOUT_S + 5)
        with self._lifecycle:
            self._terminate()
            self._set_state("stopped")

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the server is ready (e.g. after a crash, while it restarts).

        Raises:
            EngineCrashed: the restart policy gave up.
            EngineUnavailable: still not ready after `timeout_s`, or stopped.
        """
        deadline = time.monotonic() + timeout_s
        while (
            self._state == "ready" and (proc := self._proc) is not None and proc.poll() is not None
        ):
            self.check(probe=False)  # dead but not yet noticed: restart it (or see it restart)
        with self._changed:
            while self._state != "ready":
                if self._state == "failed" and isinstance(self._last_error, EngineCrashed):
                    raise self._last_error
                if self._state == "stopped":
                    raise EngineUnavailable("the engine is stopped; call start()", url=self.url)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineUnavailable(
                        f"engine at {self.url} not ready after {timeout_s:.0f} s "
                        f"(state: {self._state}); its log: {self._log_path}",
                        url=self.url,
                    )
                self._changed.wait(min(left, 1.0))

    def check(self, *, probe: bool = True) -> EngineState:
        """Look at the server once; restart it if it died or hung. The watchdog calls this.

        Args:
            probe: also ask GET /health (else only whether the process lives).

        Returns the state afterwards.
        """
        with self._lock:
            if self._state != "ready" or self._proc is None:
                return self._state
            returncode = self._proc.poll()
        if returncode is None:
            if not probe or self._probe():
                self._failed_probes = 0
                return self._state
            self._failed_probes += 1
            if self._failed_probes < self.config.unhealthy_after:
                return self._state
            reason = f"did not answer /health {self._failed_probes} times in a row"
        else:
            reason = f"exited with code {returncode}"
        self._failed_probes = 0
        self._recover(reason)
        return self._state

    # ----------------------------------------------------------------- internals

    def _set_state(self, state: EngineState) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def _probe(self) -> bool:
        try:
            response = httpx.get(self.url + "/health", timeout=_PROBE_TIMEOUT_S)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _open_log(self):
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="hybrid-vllm-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        return open(self._log_path, "ab")

    def _launch_and_wait(self) -> None:
        """Start the process and wait for readiness. Caller holds `_lifecycle`."""
        assert self._port is not None
        if not port_is_free(self.config.host, self._port):
            raise EngineStartError(
                f"port {self._port} on {self.config.host} is in use; stop what listens there, "
                "or set port: 0 to pick a free one",
                log_path=str(self._log_path) if self._log_path else None,
            )
        cmd = build_command(self.config, self._port)
        env = build_env(self.config, os.environ, self._api_key)
        with self._open_log() as logfile:
            shown = shlex.join(cmd)  # holds no secret: the key is in the environment
            logfile.write(f"\n=== hybrid: starting vLLM at {time.ctime()}: {shown}\n".encode())
            logfile.flush()
            self._log_start = logfile.tell()
            started = time.monotonic()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: stop() can kill all of it
                close_fds=True,
            )
        with self._lock:
            self._proc, self._pgid = proc, proc.pid
        log.info("vLLM starting (pid %s, port %s), log %s", proc.pid, self._port, self._log_path)
        self._wait_ready(proc, started)
        self._ready_after_s = time.monotonic() - started
        self._group_pids = group_members(proc.pid)
        self._shm_files = shared_memory_files(self._group_pids)
        log.info("vLLM ready at %s after %.1f s", self.url, self._ready_after_s)

    def _start_error(self, problem: str, proc: subprocess.Popen | None = None) -> EngineStartError:
        tail = self.log_tail()
        what = f"vLLM for {self.config.model} (pid {proc.pid})" if proc else "vLLM"
        message = f"{what} {problem}; log: {self._log_path}"
        message += "\n--- end of the vLLM log ---\n" + tail if tail else " (the log is empty)"
        return EngineStartError(
            message, log_path=str(self._log_path), log_tail=tail, problem=problem
        )

    def _wait_ready(self, proc: subprocess.Popen, started: float) -> None:
        timeout = self.config.startup_timeout_s
        deadline = started + timeout
        base = self.config.base_model_name
        headers = bearer(self._api_key)
        client = httpx.Client(base_url=self.url, headers=headers, timeout=_PROBE_TIMEOUT_S)
        with client:
            while True:
                if self._stopping.is_set():
                    raise _Stopping
                returncode = proc.poll()
                if returncode is not None:
                    raise self._start_error(
                        f"exited with code {returncode} during start-up "
                        f"({time.monotonic() - started:.0f} s after launch)",
                        proc,
                    )
                if time.monotonic() > deadline:
                    raise self._start_error(
                        f"was not ready after {timeout:.0f} s (startup_timeout_s); raise it if "
                        "the machine is slow, or read the log",
                        proc,
                    )
                try:
                    if client.get("/health").status_code == 200:
                        models = client.get("/v1/models")
                        if models.status_code == 200:
                            ids = [card.id for card in parse_models(models.json())]
                            if base in ids:
                                return
                            raise self._start_error(
                                f"serves {ids}, not '{base}'; is another server on port "
                                f"{self._port}?",
                                proc,
                            )
                        if models.status_code == 401:
                            raise self._start_error("refused our api_key on /v1/models", proc)
                except (httpx.TransportError, ValueError):
                    pass
                self._stopping.wait(_POLL_S)

    def _terminate(self) -> None:
        """SIGTERM the server, then SIGKILL its whole group; return when no member is left."""
        with self._lock:
            proc, pgid = self._proc, self._pgid
            self._proc = None
        if proc is None or pgid is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # vLLM shuts its workers down itself (~2 s)
            try:
                proc.wait(self.config.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("vLLM pid %s ignored SIGTERM; killing its process group", proc.pid)
        kill_group(pgid)  # whatever is left: workers whose parent died, a hung engine core
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(_GROUP_GONE_TIMEOUT_S)
        deadline = time.monotonic() + _GROUP_GONE_TIMEOUT_S
        while (left := group_members(pgid)) and time.monotonic() < deadline:
            kill_group(pgid)
            time.sleep(0.1)
        if left:
            log.error("processes %s of vLLM group %s survived SIGKILL", left, pgid)
            return
        # A killed vLLM cannot unlink its shared memory (hundreds of MB of RAM in /dev/shm
        # each time); a clean exit has removed these already.
        unlink_shared_memory(self._shm_files, self._group_pids)
        self._shm_files, self._group_pids = set(), []

    def _watch(self) -> None:
        last_probe = time.monotonic()
        while not self._stopping.wait(self.config.watch_interval_s):
            probe = time.monotonic() - last_probe >= self.config.probe_interval_s
            if probe:
                last_probe = time.monotonic()
            try:
                state = self.check(probe=probe)
            except Exception:  # the watchdog must outlive surprises; they are logged
                log.exception("engine watchdog check failed")
                continue
            if state == "failed":
                return

    def _recover(self, reason: str) -> None:
        """The server died or hung: restart it under the policy, then call `on_launch`."""
        with self._lifecycle:
            if self._stopping.is_set() or self._state != "ready":
                return
            self._set_state("restarting")
            died_tail = self.log_tail()
            log.warning("vLLM at %s %s; log tail:\n%s", self.url, reason, died_tail)
            self._terminate()
            last_problem = ""
            while True:
                delay = restart_delay(self._restart_times, time.monotonic(), self.config.restart)
                if delay is None:
                    policy = self.config.restart
                    tail = self.log_tail()
                    message = (
                        f"vLLM at {self.url} {reason}; the supervisor gave up after "
                        f"{policy.max_restarts} restarts within {policy.window_s:.0f} s "
                        "(restart.max_restarts)"
                    )
                    if last_problem:
                        message += f"; the last restart {last_problem}"
                    message += f"; fix the cause, then call start() again; log: {self._log_path}"
                    if tail:
                        message += "\n--- end of the vLLM log ---\n" + tail
                    self._last_error = EngineCrashed(
                        message, log_path=str(self._log_path), log_tail=tail
                    )
                    self._set_state("failed")
                    log.error("%s", message)
                    return
                if self._stopping.wait(delay):
                    return
                self._restart_times.append(time.monotonic())
                self._restarts += 1
                try:
                    self._launch_and_wait()
                except _Stopping:
                    self._terminate()
                    return
                except EngineStartError as exc:
                    self._last_error = exc
                    last_problem = exc.problem
                    log.warning("vLLM restart %s failed: %s", self._restarts, exc.problem)
                    self._terminate()
                    continue
                self._run_launch_hooks()
                self._set_state("ready")
                return

    def _run_launch_hooks(self) -> None:
        """Call `on_launch` after a (re)start; a hook's failure is logged and kept as
        `last_error`, the server is served anyway."""
        for hook in list(self.on_launch):
            try:
                hook()
            except Exception as exc:  # a hook must not undo a good start; its error is kept
                log.error("after the vLLM start at %s, %r failed: %s", self.url, hook, exc)
                if isinstance(exc, ServingError):
                    self._last_error = exc


@atexit.register
def _stop_leftover_servers() -> None:
    """Interpreter exit (also after Ctrl-C) must not leave vLLM servers running."""
    for supervisor in list(_LIVE_SUPERVISORS):
        with contextlib.suppress(Exception):
            supervisor._stopping.set()
            if supervisor._pgid is not None and supervisor._proc is not None:
                kill_group(supervisor._pgid)
                unlink_shared_memory(supervisor._shm_files, supervisor._group_pids)
