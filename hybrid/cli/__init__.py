"""The `hybrid` command line: one module per verb group (kb, data, train, model, eval,
adapter, serve, keys), each a thin shell over a `hybrid` library function, and `root` (the
group, its options, `main`). `python -m hybrid.cli` runs it.

The root module is not called `main.py`: `from hybrid.cli import main` (the function, as the
tests, examples and benches use it) would then give the module once it is imported."""

from hybrid.cli.root import app, main

__all__ = ["app", "main"]
