"""Engine configs: defaults, every problem named with its fix, and what they turn into (argv,
environment, restart delays, log tails)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.engine import EngineConfig, RemoteEngineConfig, RestartPolicy, build_command
from serving.engine.launch import build_env, restart_delay
from serving.engine.logs import clean_log_lines, log_tail


def messages(exc: ValidationError) -> str:
    return " | ".join(err["msg"] for err in exc.errors())


def test_defaults_are_usable_and_frozen():
    config = EngineConfig(model="models/tiny")
    assert config.port == 0 and config.dtype == "auto" and config.max_lora_rank == 16
    assert config.base_model_name == "models/tiny"
    assert EngineConfig(model="m", served_model_name="base").base_model_name == "base"
    with pytest.raises(ValidationError):
        config.port = 8000  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        EngineConfig(model="m", max_lora=8)  # typo of max_loras


def test_rank_outside_vllm_choices_names_the_allowed_ranks():
    with pytest.raises(ValidationError) as info:
        EngineConfig(model="m", max_lora_rank=12)
    assert "max_lora_rank 12 is not one vLLM accepts; use one of 1, 8, 16, 32, 64" in messages(
        info.value
    )


def test_all_cross_field_problems_reported_at_once():
    with pytest.raises(ValidationError) as info:
        EngineConfig(
            model="m",
            max_loras=4,
            max_cpu_loras=2,
            extra_args=("--port=9000", "--enforce-eager", "--max-lora-rank", "8"),
            restart=RestartPolicy(backoff_s=10, backoff_max_s=1),
        )
    text = messages(info.value)
    assert "max_cpu_loras (2) must be at least max_loras (4)" in text
    assert "extra_args sets --port, which the supervisor manages; use the `port` setting" in text
    assert "extra_args sets --max-lora-rank" in text and "`max_lora_rank`" in text
    assert "restart.backoff_max_s (1.0) is below restart.backoff_s (10.0)" in text
    assert "--enforce-eager" not in text


def test_kv_cache_is_whole_gib_because_vllm_parses_an_int():
    assert EngineConfig(model="m", kv_cache_gib=1).kv_cache_gib == 1
    with pytest.raises(ValidationError):
        EngineConfig(model="m", kv_cache_gib=1.5)
    with pytest.raises(ValidationError):
        EngineConfig(model="m", kv_cache_gib=0)


def test_empty_model_and_bad_port():
    with pytest.raises(ValidationError, match="model is empty"):
        EngineConfig(model="  ")
    with pytest.raises(ValidationError):
        EngineConfig(model="m", port=70000)


def test_api_keys_stay_out_of_reprs():
    assert "s3cret" not in repr(EngineConfig(model="m", api_key="s3cret"))
    assert "s3cret" not in repr(RemoteEngineConfig(urls=("http://h:1",), api_key="s3cret"))


def test_remote_urls_are_normalised_and_every_bad_one_named():
    config = RemoteEngineConfig(urls=("http://10.0.0.5:8000/", " https://gpu-box "))
    assert config.urls == ("http://10.0.0.5:8000", "https://gpu-box")
    with pytest.raises(ValidationError) as info:
        RemoteEngineConfig(
            urls=("localhost:8000", "http://a:1/v1", "http://b:2", "http://b:2/", "http://")
        )
    text = messages(info.value)
    assert "'localhost:8000' is not an http(s) URL" in text
    assert "'http://a:1/v1' ends in /v1; give the server root (http://a:1)" in text
    assert "'http://b:2/' is listed twice" in text
    assert "'http://' is not an http(s) URL" in text
    with pytest.raises(ValidationError, match="urls is empty"):
        RemoteEngineConfig(urls=())


def test_command_line_carries_every_setting():
    config = EngineConfig(
        model="/models/tiny",
        served_model_name="tiny",
        max_loras=2,
        max_lora_rank=8,
        max_cpu_loras=4,
        max_model_len=512,
        dtype="float32",
        api_key="k",
        extra_args=("--enforce-eager",),
    )
    cmd = build_command(config, 8123)
    assert cmd[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/models/tiny"]
    joined = " ".join(cmd)
    for part in (
        "--port 8123",
        "--served-model-name tiny",
        "--enable-lora --max-loras 2",
        "--max-lora-rank 8",
        "--max-cpu-loras 4",
        "--max-model-len 512",
        "--dtype float32",
        "--middleware hybrid_engine_guard.EngineGuard",
    ):
        assert part in joined
    assert cmd[-1] == "--enforce-eager"
    assert "--api-key" not in cmd and "k" not in cmd  # argv is world-readable in /proc
    assert "--max-cpu-loras" not in build_command(EngineConfig(model="m"), 1)


def test_environment_is_built_for_the_child_only():
    before = dict(os.environ)
    base = {"PATH": "/bin", "HF_HUB_OFFLINE": "0"}
    env = build_env(EngineConfig(model="m", kv_cache_gib=1, env={"OMP_NUM_THREADS": "2"}), base)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1" and env["OMP_NUM_THREADS"] == "2"
    assert env["PATH"] == "/bin"
    assert base == {"PATH": "/bin", "HF_HUB_OFFLINE": "0"} and dict(os.environ) == before
    online = build_env(EngineConfig(model="m", offline=False), {})
    assert "HF_HUB_OFFLINE" not in online and "VLLM_CPU_KVCACHE_SPACE" not in online


def test_restart_delay_backs_off_caps_and_forgets_old_restarts():
    policy = RestartPolicy(max_restarts=4, window_s=100, backoff_s=1, backoff_max_s=3)
    assert restart_delay([], 1000, policy) == 1
    assert restart_delay([990], 1000, policy) == 2
    assert restart_delay([980, 990], 1000, policy) == 3  # 4, capped
    assert restart_delay([970, 980, 990, 995], 1000, policy) is None
    assert restart_delay([800, 850, 890, 995], 1000, policy) == 2  # only 995 is in the window
    assert restart_delay([], 0, RestartPolicy(max_restarts=0)) is None


VLLM_FAILURE_LOG = """\
(APIServer pid=1) INFO 11-24 09:57:01 [api_server.py:1] vLLM API server version 0.32.0
/venv/vllm/entrypoints/openai/api_server.py:51: DeprecationWarning: The `python -m vllm...` command is deprecated
  warnings.warn(
(APIServer pid=1) INFO 11-24 10:09:23 [utils.py:299] ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.32.0
usage: api_server.py [-h] [--headless] [--api-server-count API_SERVER_COUNT]
                     [--max-num-seqs MAX_NUM_SEQS]
api_server.py: error: argument --max-num-seqs: invalid int value: 'abc'
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/vllm/engine/arg_utils.py", line 2240, in create_engine_config
    model_config = self.create_model_config()
                   ^^^^^^^^^^^^^^^^^^^^^^^^^^
pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig
  Value error, User-specified max_model_len (4096) is greater than the derived max_model_len
    For further information visit https://errors.pydantic.dev/2.14/v/value_error
(EngineCore pid=2) ERROR 11-24 09:55:11 [core.py:1750] RuntimeError: Worker failed with error 'x'
nanobind: leaked 9 functions!
 - leaked function "create_ptr_to_int"
 - ... skipped remainder
/usr/lib/python3.11/multiprocessing/resource_tracker.py:254: UserWarning: resource_tracker: There appear to be 2 leaked shared_memory objects to clean up at shutdown
"""


def test_log_tail_keeps_the_errors_and_drops_frames_prefixes_and_noise(tmp_path):
    lines = clean_log_lines(VLLM_FAILURE_LOG.splitlines())
    assert lines == [
        "vLLM API server version 0.32.0",
        "api_server.py: error: argument --max-num-seqs: invalid int value: 'abc'",
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
        "Value error, User-specified max_model_len (4096) is greater than the derived "
        "max_model_len",
        "RuntimeError: Worker failed with error 'x'",
    ]
    log = tmp_path / "vllm.log"
    log.write_text("old start\n" + "x" * 1000 + "\n" + VLLM_FAILURE_LOG)
    tail = log_tail(log, max_lines=3, max_line_chars=60)
    assert tail.splitlines()[0] == "pydantic_core._pydantic_core.ValidationError: 1 validatio..."
    assert len(tail.splitlines()) == 3
    start = len("old start\n" + "x" * 1000 + "\n")
    assert "old start" not in log_tail(log, start=start, max_lines=50)
    assert log_tail(tmp_path / "missing.log") == "" and log_tail(None) == ""


def test_the_engine_key_travels_in_the_environment_with_the_guard_on_the_path():
    env = build_env(EngineConfig(model="m", api_key="s3cret"), {"PYTHONPATH": "/mine"})
    assert env["VLLM_API_KEY"] == "s3cret"
    guard_dir, mine = env["PYTHONPATH"].split(os.pathsep)
    assert mine == "/mine" and (Path(guard_dir) / "hybrid_engine_guard.py").is_file()
    generated = build_env(EngineConfig(model="m"), {"VLLM_API_KEY": "inherited"}, "fresh")
    assert generated["VLLM_API_KEY"] == "fresh"
    assert "VLLM_API_KEY" not in build_env(EngineConfig(model="m"), {"VLLM_API_KEY": "x"})


def test_a_supervisor_without_a_configured_key_generates_a_secret():
    from serving.engine import EngineProcess

    first, second = EngineProcess(EngineConfig(model="m")), EngineProcess(EngineConfig(model="m"))
    assert len(first.api_key) >= 40 and first.api_key != second.api_key
    assert build_env(first.config, {}, first.api_key)["VLLM_API_KEY"] == first.api_key
    assert EngineProcess(EngineConfig(model="m", api_key="given")).api_key == "given"


@pytest.mark.parametrize(
    ("template", "parser"),
    [
        ("{{ '<|im_start|>' + message['role'] }}", "hermes"),  # ChatML (SmolLM2)
        ("{% if tools %}<tool_call>{{ t }}</tool_call>{% endif %}<|im_start|>", "hermes"),
        ("{{ '[TOOL_CALLS]' }}[INST]", "mistral"),
        ("<|start_header_id|>ipython<|python_tag|>", "llama3_json"),
        ("{{ bos_token }}<start_of_turn>user", None),
    ],
)
def test_the_tool_call_parser_is_chosen_by_chat_template(tmp_path, template, parser):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    config = EngineConfig(model=str(tmp_path))
    assert config.tool_parser() == parser
    cmd = " ".join(build_command(config, 1))
    if parser is None:
        assert "--tool-call-parser" not in cmd and "--enable-auto-tool-choice" not in cmd
    else:
        assert f"--enable-auto-tool-choice --tool-call-parser {parser}" in cmd
    assert EngineConfig(model=str(tmp_path), tool_call_parser=None).tool_parser() is None
    assert EngineConfig(model=str(tmp_path), tool_call_parser="pythonic").tool_parser() == (
        "pythonic"
    )


def test_tool_flags_in_extra_args_name_the_setting():
    with pytest.raises(ValidationError, match="use the `tool_call_parser` setting"):
        EngineConfig(model="m", extra_args=("--tool-call-parser", "hermes"))
