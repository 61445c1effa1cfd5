"""`hybrid serve [CONFIG]`: a shell over `hybrid.serve` (hybrid/server.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hybrid.cli.state import State
from hybrid.config import load_config


def serve(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Argument(help="Config YAML (default: --config or ./hybrid.yaml).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (overrides the config).")] = None,
    port: Annotated[int | None, typer.Option(help="Gateway port (overrides the config).")] = None,
) -> None:
    """Start (or attach to) vLLM and serve the OpenAI-compatible gateway until Ctrl-C."""
    from hybrid.server import serve as run

    state: State = ctx.obj
    run(load_config(config) if config is not None else state.config, host=host, port=port)
