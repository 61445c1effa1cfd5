"""`hybrid serve [CONFIG]`: a shell over `hybrid.serve` (hybrid/server.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hybrid.cli.help import field_help
from hybrid.cli.state import State
from hybrid.config import GatewayConfig, load_config

_OVERRIDES = " Overrides the config."


def serve(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Argument(help="Config YAML (default: --config or ./hybrid.yaml).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help=field_help(GatewayConfig, "host", _OVERRIDES))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help=field_help(GatewayConfig, "port", _OVERRIDES))
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help=field_help(GatewayConfig, "workers", _OVERRIDES))
    ] = None,
) -> None:
    """Start (or attach to) vLLM and serve the OpenAI-compatible gateway until Ctrl-C."""
    from hybrid.server import serve as run

    state: State = ctx.obj
    settings = load_config(config) if config is not None else state.config
    run(settings, host=host, port=port, workers=workers)
