"""Apps for `hybrid serve`: read every app file, open their knowledge bases, and check that
their adapters are registered and their base model is the served one, all before serving."""

from __future__ import annotations

from pathlib import Path

from hybrid.apps.app import open_pipeline
from hybrid.apps.budget import PromptBudget
from hybrid.apps.composer import AppComposer
from hybrid.apps.pipeline import AppPipeline
from hybrid.apps.spec import load_app_specs
from hybrid.errors import ConfigError
from retrieval import KnowledgeBaseCatalog
from serving.adapters import AdapterNotFound, AdapterRegistry
from serving.gateway import GatewayMetrics


def app_files(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Files as given, folders expanded to their *.yaml / *.yml files (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        else:
            files.append(path)
    return files


def load_pipelines(
    paths,
    catalog: KnowledgeBaseCatalog,
    registry: AdapterRegistry,
    base_name: str,
    budget: PromptBudget | None = None,
) -> list[AppPipeline]:
    """Every app, checked; all problems of all apps are reported at once.

    Raises:
        ConfigError: an invalid file, a missing knowledge base or adapter, a wrong base model.
    """
    specs = load_app_specs(app_files(paths))
    pipelines, problems = [], []
    for spec in specs:
        if spec.base_model is not None and spec.base_model != base_name:
            problems.append(
                f"app '{spec.name}' expects base model '{spec.base_model}' but the engine "
                f"serves '{base_name}'"
            )
        if spec.adapter is not None:
            try:
                registry.resolve(spec.adapter)
            except AdapterNotFound as exc:
                problems.append(
                    f"app '{spec.name}' uses adapter '{spec.adapter}': {exc}; register it with "
                    "`hybrid adapter register PATH --name NAME --offline`"
                )
        try:
            pipelines.append(open_pipeline(spec, catalog, budget))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return pipelines


def app_composer(
    paths,
    catalog: KnowledgeBaseCatalog,
    registry: AdapterRegistry,
    base_name: str,
    metrics: GatewayMetrics | None = None,
    budget: PromptBudget | None = None,
) -> AppComposer:
    pipelines = load_pipelines(paths, catalog, registry, base_name, budget)
    return AppComposer(pipelines, base_name, metrics.registry if metrics else None)
