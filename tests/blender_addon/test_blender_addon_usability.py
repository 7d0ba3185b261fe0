"""What a Blender user sees and does, in a real headless Blender: presets and steps, visible
results, undo, and honest connection state (fake sidecars in the bpy process; no GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from blender_harness import installed_home, run_bpy

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_home(tmp_path_factory.mktemp("blender"))


def test_unset_steps_leave_the_length_to_the_preset_and_sessions_show_their_own(
    home: Path,
) -> None:
    result = run_bpy("preset_and_queries", home).result
    # default panel: no steps sent, so the session's preset decides (Small: 5,000 / 3,000)
    assert result["defaults"] == {"job.train_base": None, "job.run_turn": None}
    assert result["chosen"] == {"job.train_base": 123, "job.run_turn": 45}
    assert result["preset_after_open"] == "paper"  # the session's, not the panel's "small"
    # a query with a comma stays one query
    assert result["turn_queries"] == ["hat, brim; scarf", "face"]
