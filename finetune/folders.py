"""Output folders that appear whole or not at all.

Every finetune command that writes a folder (a prepared base model, a trained, merged or scaled
adapter) writes it as `<out>.partial` and renames it into place only when it is complete, so a
crash or Ctrl-C never leaves a folder that looks usable. No kept library stages whole folders
(the atomic-write packages write single files), hence these few lines.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield the empty folder path `<out>.partial` to write into. When the block ends normally
    it becomes `out` (a folder already at `out` is replaced only at that moment); when it
    raises, the partial folder is removed and the error goes on."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        partial.rename(out)
        return
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)
