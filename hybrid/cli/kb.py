"""`hybrid kb ...`: create, ingest, query, list, chunks, stats, delete knowledge bases."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hybrid.cli.help import field_help
from hybrid.cli.state import State
from hybrid.errors import HybridError
from hybrid.knowledge import (
    ChunkingConfig,
    EmbedderConfig,
    QueryOptions,
    create_knowledge_base,
    evaluate_retrieval,
    search,
)

app = typer.Typer(help="Knowledge bases: documents in, cited passages out.", no_args_is_help=True)


def _parse_filters(raw: list[str]) -> dict[str, str | int | float | bool]:
    filters: dict[str, str | int | float | bool] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HybridError(f"bad --filter '{item}'; write KEY=VALUE, e.g. --filter page=3")
        filters[key] = _scalar(value)
    return filters


def _scalar(value: str) -> str | int | float | bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base name, e.g. acme-docs.")],
    chunk_size: Annotated[
        int | None, typer.Option(help=field_help(ChunkingConfig, "chunk_size"))
    ] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option(help=field_help(ChunkingConfig, "chunk_overlap"))
    ] = None,
    boundaries: Annotated[
        str | None, typer.Option(help=field_help(ChunkingConfig, "boundaries"))
    ] = None,
    embedder_model: Annotated[
        str | None, typer.Option(help=field_help(EmbedderConfig, "model"))
    ] = None,
) -> None:
    """Create an empty knowledge base."""
    state: State = ctx.obj
    kb = create_knowledge_base(
        state.catalog,
        name,
        state.config.knowledge_base_defaults,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        boundaries=boundaries,
        embedder_model=embedder_model,
    )
    typer.echo(f"created knowledge base '{kb.name}' in {state.catalog.description}")


@app.command()
def ingest(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.txt .md .html .pdf).")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    batch_chunks: Annotated[
        int, typer.Option(min=1, help="Chunks embedded and written per batch (memory vs speed).")
    ] = 256,
) -> None:
    """Ingest files and folders. Re-running is incremental: unchanged files are skipped."""
    state: State = ctx.obj
    kb = state.catalog.open(name)
    report = kb.ingest(paths, progress=not quiet, batch_chunks=batch_chunks)
    for failure in report.failures:
        typer.echo(f"skipped: {failure}", err=True)
    typer.echo(report.summary())


@app.command()
def query(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    text: Annotated[str, typer.Argument(help="The question or search text.")],
    top_k: Annotated[
        int, typer.Option("--top-k", "-k", help="Passages to return.")
    ] = QueryOptions.model_fields["top_k"].default,
    mode: Annotated[
        str, typer.Option(help="vector or hybrid. " + field_help(QueryOptions, "mode"))
    ] = QueryOptions.model_fields["mode"].default,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="KEY=VALUE on chunk metadata; repeatable.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(help=field_help(QueryOptions, "min_score"))
    ] = None,
    context_chars: Annotated[
        int | None,
        typer.Option(help="Widen each passage with neighbouring chunks up to this many chars."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Search a knowledge base; print passages with score and citation."""
    state: State = ctx.obj
    filters = _parse_filters(filter_ or [])
    widening = {} if context_chars is None else {"context_chars": context_chars}
    hits = search(
        state.catalog,
        name,
        text,
        top_k=top_k,
        mode=mode,
        filters=filters,
        min_score=min_score,
        **widening,
    )
    if as_json:
        json.dump([dataclasses.asdict(h) for h in hits], sys.stdout, indent=2, default=str)
        typer.echo()
        return
    if not hits:
        typer.echo("no passages found")
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())
        snippet = snippet[:200] + ("..." if len(snippet) > 200 else "")
        typer.echo(f"[{rank}] {hit.score:.3f}  {hit.citation.label()}\n    {snippet}")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List knowledge bases with their chunk counts."""
    state: State = ctx.obj
    infos = state.catalog.list()
    if not infos:
        typer.echo(f"no knowledge bases in {state.catalog.description}")
    for info in infos:
        typer.echo(f"{info.name}\t{info.chunks} chunks\tupdated {info.updated_at}")


@app.command()
def chunks(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Only this file (name or path).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable, full text.")] = False,
) -> None:
    """List the stored chunks in document order: citation, position and the start of the text."""
    state: State = ctx.obj
    listed = state.catalog.open(name).chunks(file=file)
    if as_json:
        json.dump([dataclasses.asdict(c) for c in listed], sys.stdout, indent=2)
        typer.echo()
        return
    for chunk in listed:
        snippet = " ".join(chunk.text.split())
        snippet = snippet[:80] + ("..." if len(snippet) > 80 else "")
        where = f"{chunk.chunk_index + 1}/{chunk.chunk_count}"
        typer.echo(f"{chunk.citation.label()}  {where}  {snippet}")
    files = len({c.citation.source for c in listed})
    typer.echo(f"{len(listed)} chunks from {files} file{'s' if files != 1 else ''}")


@app.command()
def stats(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Counts and settings of one knowledge base."""
    state: State = ctx.obj
    result = state.catalog.open(name).stats()
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    types = ", ".join(f"{k}: {v}" for k, v in sorted(result.file_types.items())) or "none"
    typer.echo(
        f"{result.name} ({result.store})\n"
        f"  {result.chunks} chunks from {result.files} files ({types}), {result.pages} pages\n"
        f"  embedder {result.embedder} ({result.dimension}-d); chunks of {result.chunk_size} "
        f"tokens, overlap {result.chunk_overlap}\n"
        f"  created {result.created_at}, updated {result.updated_at} (revision {result.revision})"
    )


@app.command()
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a knowledge base and all its chunks (the source files are untouched)."""
    state: State = ctx.obj
    if not yes and not typer.confirm(f"delete knowledge base '{name}' and all its chunks?"):
        raise typer.Abort()
    state.catalog.delete(name)
    typer.echo(f"deleted knowledge base '{name}'")


@app.command("eval")
def eval_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    questions: Annotated[Path, typer.Argument(help="JSONL: question, source, page, evidence.")],
    mode: Annotated[
        list[str] | None, typer.Option(help="Modes to compare (default: vector and hybrid).")
    ] = None,
    depth: Annotated[int, typer.Option(min=1, max=200, help="Ranks searched for MRR.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Labelled retrieval check: hit@1/3/5 and MRR per search mode."""
    state: State = ctx.obj
    result = evaluate_retrieval(state.catalog, name, questions, modes=mode, depth=depth)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(result.table())
