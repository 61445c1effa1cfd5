from __future__ import annotations

import pytest

from finetune.folders import staged_folder


def test_a_staged_folder_appears_whole_and_replaces_the_old_one_only_at_the_end(tmp_path):
    out = tmp_path / "nested" / "adapter"
    with staged_folder(out) as partial:
        partial.mkdir(parents=True)
        (partial / "weights").write_text("v1")
        assert not out.exists()
    assert (out / "weights").read_text() == "v1"
    with staged_folder(out) as partial:
        partial.mkdir()
        (partial / "weights").write_text("v2")
        assert (out / "weights").read_text() == "v1"  # the old folder serves until the end
    assert (out / "weights").read_text() == "v2"
    assert sorted(p.name for p in out.parent.iterdir()) == ["adapter"]


def test_a_failed_write_leaves_the_old_folder_and_no_partial_one(tmp_path):
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "weights").write_text("old")
    stale = tmp_path / "adapter.partial"
    stale.mkdir()  # left by a killed run: cleared before writing
    with pytest.raises(RuntimeError, match="disk full"), staged_folder(out) as partial:
        assert not partial.exists()
        partial.mkdir()
        (partial / "weights").write_text("half")
        raise RuntimeError("disk full")
    assert (out / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
