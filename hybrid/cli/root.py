"""The `hybrid` command: the root group, its options, and `main` (the console script). Each
verb group lives in its own module beside this one (kb, data, train, model, eval, adapter,
serve, keys), a thin shell over a `hybrid` library function: parse, call, print a short result.

Every error the user can cause ends as one line on stderr and a non-zero exit, never a traceback
(`--debug` shows it).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from hybrid.cli import adapter, data, kb, keys, model, serve, train
from hybrid.cli import eval as evaluate
from hybrid.cli.state import State
from hybrid.config import format_validation_error
from hybrid.errors import TrainingInterrupted, UsageError, user_errors

app = typer.Typer(
    name="hybrid",
    help="Hybrid: RAG + LoRA apps. Facts from retrieval, voice from adapters, served by vLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(kb.app, name="kb")
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.add_typer(model.app, name="model")
app.add_typer(evaluate.app, name="eval")
app.add_typer(adapter.app, name="adapter")
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: ./hybrid.yaml if present)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Embedded store directory (overrides the config)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(config_path=config, data_dir=data_dir, debug=debug)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    except TrainingInterrupted as exc:  # Ctrl-C: the shell's usual code, and where to resume
        return _fail(str(exc), debug, code=130)
    except UsageError as exc:  # bad input named on the command line: typer's usage code
        return _fail(str(exc), debug, code=2)
    except user_errors() as exc:
        return _fail(str(exc), debug)
    except ValidationError as exc:
        return _fail(format_validation_error(exc, "options"), debug)
    except KeyboardInterrupt:
        return _fail(
            "interrupted; nothing half-written was kept, re-run to finish", debug, code=130
        )
    except Exception as exc:  # an unexpected failure still ends as one line
        return _fail(f"internal error ({type(exc).__name__}: {exc}); re-run with --debug", debug)
    return 0


def _fail(message: str, debug: bool, code: int = 1) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
