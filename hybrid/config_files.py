"""Reading Hybrid's YAML files: one reader for every file (`hybrid.yaml`, training and eval
configs, their `context:` section, app files) and one rule for the paths in them.

The rule: a relative path in a file is taken from the file's folder and made absolute
(`~` expanded); a model reference (a packaged name, a hub id or a folder) is a path only when
it starts with `./` or `../` or names a folder there. Paths given as overrides (command-line
options) are taken as given. Which fields are paths is declared beside each config in
`hybrid/config.py`; the configs of retrieval/, finetune/ and serving/ cannot carry a Hybrid
path type themselves (the layers never import `hybrid`), so the rule applies to validated
configs from the outside, the same way for Hybrid's own sections.

Kept free of the layers' imports: `hybrid.apps.spec` reads app files with it cheaply.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from hybrid.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """The base of Hybrid's own configs (the YAML tree, app specs, evaluation settings): frozen
    and strict about typos. retrieval/, finetune/ and serving/ each keep their own (they never
    import each other); this one keeps Hybrid's configs independent of the layers they compose."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def format_validation_error(exc: ValidationError, source: str) -> str:
    """All problems of one validation, each as `where: problem (got value)`, in one line."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        problems.append(f"{where}: {message}{shown}")
    return f"{source}: {len(problems)} problem(s): " + "; ".join(problems)


def read_yaml_mapping(
    path: Path, *, kind: str = "config file", what: str = "settings", hint: str = ""
) -> dict:
    """The mapping at the top of a YAML file (an empty file is an empty mapping).

    Raises:
        ConfigError: `{kind} not found` (plus `hint`), not YAML (with the line), or not a
            mapping.
    """
    if not path.is_file():
        raise ConfigError(f"{kind} not found: {path}{hint}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of {what}, got {type(raw).__name__}")
    return raw


def validate(model: type[M], raw: dict, source: str) -> M:
    """`model` from `raw`, every problem in one `ConfigError` naming `source`."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def resolve_path(value: str | Path, base: Path) -> Path:
    """The path rule: `~` expanded, relative paths taken from `base` (made absolute)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base.expanduser().absolute() / path


def resolve_model_ref(value: str, base: Path) -> str:
    """A model reference that is a path (`./x`, `../x`, or a folder under `base`) as an
    absolute folder; a packaged name or hub id unchanged."""
    if value.startswith(("./", "../")) or (base / value).is_dir():
        return str(resolve_path(value, base))
    return value


def with_paths_resolved(
    config: M,
    base: Path,
    paths: Iterable[str],
    model_refs: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> M:
    """`config` with the fields named in `paths` (dotted, e.g. `adapters.registry`; a path, a
    tuple of paths or None) and `model_refs` resolved against `base`; top-level fields in
    `keep` (given as overrides) stay as given."""
    kept = set(keep)
    updates: dict[tuple[str, ...], object] = {}
    for dotted, rule in [*((p, "path") for p in paths), *((m, "model") for m in model_refs)]:
        where = tuple(dotted.split("."))
        if where[0] in kept:
            continue
        value = _get(config, where)
        if value is None:
            continue
        if rule == "model":
            updates[where] = resolve_model_ref(value, base)
        elif isinstance(value, tuple | list):
            updates[where] = tuple(resolve_path(v, base) for v in value)
        else:
            updates[where] = resolve_path(value, base)
    return _set_all(config, updates)


def as_lists(raw: dict, model: type[BaseModel], fields: Iterable[str]) -> dict:
    """One value where `model` takes a list of paths (`data: train.jsonl`) becomes a list."""
    out = dict(raw)
    for name in fields:
        value = out.get(name)
        if isinstance(value, str | Path) and _takes_many(model.model_fields[name].annotation):
            out[name] = [value]
    return out


def _takes_many(annotation) -> bool:
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    return any(typing.get_origin(o) in (tuple, list) for o in options)


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _get(config: BaseModel, where: tuple[str, ...]):
    value = config
    for name in where:
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def _set_all(config: M, updates: dict[tuple[str, ...], object]) -> M:
    nested: dict[str, dict[tuple[str, ...], object]] = {}
    top: dict[str, object] = {}
    for where, value in updates.items():
        if len(where) == 1:
            top[where[0]] = value
        else:
            nested.setdefault(where[0], {})[where[1:]] = value
    for name, inner in nested.items():
        top[name] = _set_all(getattr(config, name), inner)
    return config.model_copy(update=top) if top else config
