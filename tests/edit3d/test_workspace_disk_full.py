"""A write that fails on a full disk leaves the old file and no temp file behind."""

from __future__ import annotations

import errno
import json

import pytest

from edit3d import workspace


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_workspace_json_on_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path,
                                                                      monkeypatch) -> None:
    path = tmp_path / "workspace.json"
    workspace._atomic_write_json(path, {"head": "base"})
    monkeypatch.setattr(workspace.os, "fsync", _disk_full)
    with pytest.raises(OSError) as full:
        workspace._atomic_write_json(path, {"head": "turn-0001"})
    monkeypatch.undo()
    assert full.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["workspace.json"]
    assert json.loads(path.read_text()) == {"head": "base"}
