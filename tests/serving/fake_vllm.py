"""A stand-in for `python -m vllm.entrypoints.openai.api_server`, so the supervisor's logic
(start, readiness, death, restart, process-group kill) is tested in seconds without vLLM.

Called as `fake_vllm.py -m vllm.entrypoints.openai.api_server --model M --port P ...`. It speaks
the few routes the supervisor uses, with vLLM's answers (see serving/engine/protocol.py), and
forks a child that sleeps, like vLLM's engine-core process. Behaviour from the environment:

- FAKE_VLLM_MODE: `ok` (default), `crash` (print a vLLM-like traceback, exit 1), `hang` (never
  listen), `ignore-term` (like ok, but SIGTERM is ignored);
- FAKE_VLLM_CRASH_IF: a file; when it exists at start-up, behave as `crash`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CRASH_LOG = """\
(APIServer pid={pid}) INFO 11-24 09:57:01 [utils.py:233] non-default args: {{'model': 'm'}}
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/vllm/engine/arg_utils.py", line 1955, in create_model_config
    return ModelConfig(
           ^^^^^^^^^^^^
pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig
  Value error, User-specified max_model_len (4096) is greater than the derived max_model_len (max_position_embeddings=1024.0 or model_max_length=None in model's config.json).
    For further information visit https://errors.pydantic.dev/2.14/v/value_error
nanobind: leaked 3 functions!
 - leaked function "create_ptr_to_int"
"""


def main() -> None:  # noqa: C901 - a test double's routes in one handler, kept flat
    parser = argparse.ArgumentParser()
    parser.add_argument("-m")
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key")
    args, _ = parser.parse_known_args()
    base = args.served_model_name or args.model

    mode = os.environ.get("FAKE_VLLM_MODE", "ok")
    crash_if = os.environ.get("FAKE_VLLM_CRASH_IF")
    if crash_if and Path(crash_if).exists():
        mode = "crash"
    print(f"fake vLLM pid={os.getpid()} mode={mode} argv={sys.argv[1:]}", flush=True)
    for key in ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "VLLM_CPU_KVCACHE_SPACE", "HF_HUB_OFFLINE"):
        print(f"env {key}={os.environ.get(key)}", flush=True)
    if mode == "crash":
        sys.stdout.write(CRASH_LOG.format(pid=os.getpid()))
        sys.exit(1)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Like vLLM's engine core: a child in our process group that outlives a killed parent.
    sleeper = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    subprocess.Popen([sys.executable, "-c", sleeper])
    if mode == "hang":
        time.sleep(600)
        return

    adapters: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *fmt_args: object) -> None:
            print("access: " + fmt % fmt_args, flush=True)

        def _send(self, status: int, body: object) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, kind: str, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, "")
            elif self.path == "/v1/models":
                cards = [{"id": base, "root": args.model, "parent": None}]
                cards += [{"id": n, "root": p, "parent": base} for n, p in adapters.items()]
                self._send(200, {"object": "list", "data": cards})
            else:
                self._error(404, "NotFoundError", "no route")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = body.get("lora_name")
            if self.path == "/v1/load_lora_adapter":
                if name in adapters:
                    self._error(
                        400,
                        "InvalidUserInput",
                        f"The lora adapter '{name}' has already been loaded.",
                    )
                elif not (Path(body["lora_path"]) / "adapter_config.json").is_file():
                    self._error(
                        404,
                        "NotFoundError",
                        f"Loading lora {name} failed: No adapter found for <path>",
                    )
                else:
                    adapters[name] = body["lora_path"]
                    self._send(200, f"Success: LoRA adapter '{name}' added successfully.")
            elif self.path == "/v1/unload_lora_adapter":
                if adapters.pop(name, None) is None:
                    self._error(404, "NotFoundError", f"The lora adapter '{name}' cannot be found.")
                else:
                    self._send(200, f"Success: LoRA adapter '{name}' removed successfully.")
            else:
                self._error(404, "NotFoundError", "no route")

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print("Application startup complete.", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
