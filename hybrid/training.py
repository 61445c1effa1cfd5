"""`hybrid.train(config)`: train a style adapter from a training config, with the optional
`context:` section laid out as the named app serves it; what `hybrid train` runs. Also the
checks around training a Python user calls: `check_training_data` (`hybrid data check`) and
`evaluate_adapter` (`hybrid eval adapter`).

    import hybrid

    result = hybrid.train(Path("examples/ceo-report-qa/train.yaml"), overrides={"epochs": 1})
    print(result.adapter_dir, result.metrics["train_loss"])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.config import load_context_training, load_eval_config, load_train_config

if TYPE_CHECKING:
    from finetune.config import EvalConfig
    from finetune.data.check import DataReport
    from finetune.evaluation import EvalReport
    from finetune.training import TrainResult
    from retrieval import KnowledgeBaseCatalog


def train(
    config: Path,
    *,
    overrides: dict | None = None,
    resume: bool = False,
    overwrite: bool = False,
    use_context: bool = True,
    catalog: Callable[[], KnowledgeBaseCatalog] | None = None,
    progress: bool = True,
    notes: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the adapter a training config describes.

    Args:
        config: The training YAML; its relative paths are taken from its folder.
        overrides: Settings replacing the file's (paths in them are taken as given).
        resume: Continue an interrupted run from its checkpoint.
        overwrite: Replace an existing adapter folder.
        use_context: Honour the file's `context:` section (each chat example laid out as the
            named app serves it, plus optional grounded-voice examples).
        catalog: Opens the catalog holding the context app's knowledge base; called only
            with a `context:` section (default: the store of ./hybrid.yaml, or the default).
        progress: Show the progress bar.
        notes: Called with a line about each change made to the examples.

    Raises:
        ConfigError: the file or an override is invalid (every problem listed).
        FinetuneError: training failed; TrainingInterrupted on Ctrl-C (resumable).
    """
    from finetune.training import train as run_training

    settings = load_train_config(config, overrides)
    context = load_context_training(config) if use_context else None
    examples = None
    if context is not None:
        examples = _examples_in_context(settings, context, catalog, notes or (lambda _: None))
    return run_training(
        settings, resume=resume, overwrite=overwrite, progress=progress, examples=examples
    )


def _examples_in_context(settings, context, catalog, note: Callable[[str], None]) -> list:
    from finetune.base_models import resolve_base_model
    from finetune.training import load_training_examples
    from hybrid.apps.app import open_pipeline
    from hybrid.apps.budget import PromptBudget
    from hybrid.apps.context_training import with_app_context
    from hybrid.apps.spec import load_app_spec

    if catalog is None:
        from hybrid.config import load_config
        from retrieval import KnowledgeBaseCatalog

        def catalog():
            return KnowledgeBaseCatalog(load_config(None).store)

    pipeline = open_pipeline(load_app_spec(context.app), catalog())
    budget = PromptBudget(resolve_base_model(settings.base_model), settings.max_length)
    examples, changed = with_app_context(
        load_training_examples(settings),
        pipeline,
        share=context.share,
        seed=context.seed,
        budget=budget,
    )
    note(
        f"{changed} of {len(examples)} examples laid out as app "
        f"'{pipeline.spec.name}' serves them (knowledge base {pipeline.spec.knowledge_base})"
    )
    if not context.grounded_examples:
        return examples
    from hybrid.apps.grounded_examples import grounded_examples, load_questions

    passages, served = _knowledge_base_views(pipeline)
    grounded = grounded_examples(
        passages,
        pipeline.spec,
        examples,
        count=context.grounded_examples,
        seed=context.seed,
        exclude=load_questions(context.holdout),
        budget=budget,
        served=served,
        opening_share=context.opening_share,
    )
    note(
        f"{len(grounded)} grounded-voice examples added from the knowledge base "
        "(figures perturbed, answers copy them with their [n] citation)"
    )
    grounded += _abstention_examples(pipeline, context, budget, (passages, served), note)
    if not context.train_style_data:
        note(f"the {len(examples)} examples of data: only lend their voice (train_style_data off)")
        return grounded
    return [*examples, *grounded]


def _knowledge_base_views(pipeline) -> tuple[list, Callable]:
    """The app's knowledge base as numbered passages and as served (widened), from one read of
    its chunks: grounded and abstention examples both draw on them."""
    from hybrid.apps.grounded_examples import knowledge_base_passages, served_texts, sorted_chunks

    kb = pipeline.knowledge_base
    chunks = sorted_chunks(kb)
    return (
        knowledge_base_passages(kb, chunks),
        served_texts(kb, pipeline.spec.retrieval.context_chars, chunks),
    )


def _abstention_examples(
    pipeline, context, budget, views: tuple[list, Callable], note: Callable[[str], None]
) -> list:
    if not context.abstention_examples:
        return []
    from hybrid.apps.abstention_examples import abstention_examples
    from hybrid.apps.grounded_examples import load_questions
    from hybrid.apps.prompt import Passage
    from retrieval.relevance import OFF_TOPIC_QUESTIONS

    options = pipeline.query_options().model_copy(
        update={"min_similarity": None, "known_names_only": False}
    )
    off_topic = [
        (question, [Passage.of(n, h.text, h.citation) for n, h in enumerate(hits, start=1)])
        for question in OFF_TOPIC_QUESTIONS
        if (hits := pipeline.knowledge_base.query(question, options))
    ]
    passages, served = views
    made = abstention_examples(
        passages,
        pipeline.spec,
        count=context.abstention_examples,
        seed=context.seed,
        off_topic=off_topic,
        exclude=load_questions(context.holdout),
        budget=budget,
        served=served,
    )
    note(
        f"{len(made)} abstention examples added (questions the passages do not answer, "
        "answered with the app's no-context message)"
    )
    return made


def data_formats() -> list[str]:
    """The training-data formats `check_training_data` and training read ("auto" guesses)."""
    from finetune.data import available_formats

    return available_formats()


def check_training_data(
    paths: Sequence[Path],
    *,
    format: str = "auto",
    tokenizer: Path | None = None,
    max_length: int = 1024,
) -> DataReport:
    """Counts, lengths, duplicates, diversity and (with a tokenizer folder) the chat-template
    check of training files; without a tokenizer lengths are whitespace-word estimates."""
    from finetune.data import check_dataset, load_dataset, load_tokenizer

    examples = load_dataset(list(paths), format=format)
    return check_dataset(
        examples, load_tokenizer(tokenizer) if tokenizer else None, max_length=max_length
    )


def evaluate_adapter(
    config: Path | None, overrides: dict, *, progress: bool = True
) -> tuple[EvalReport, EvalConfig]:
    """Base vs adapter losses (seen, held-out, general guard) and rule adherence, from an
    optional eval YAML plus overrides; returns the report and the settings it ran with."""
    from finetune.evaluation import evaluate_adapter as run

    settings = load_eval_config(config, overrides)
    return run(settings, progress=progress), settings
