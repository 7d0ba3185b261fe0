"""The editor pool on a local Ray instance (2 CPUs): equality with the synchronous turn,
every view edited as often, actors killed mid-turn, cancel and resume of edits in flight."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edit3d.editing.dispatch import EditDispatcher, EditDone, EditJob, LocalDispatcher
from edit3d.editing.editors import load_editor
from edit3d.editing.settings import EditorSettings
from edit3d.editing.testing import ObjectPainter, PacedEditor
from edit3d.editing.turns import TurnSpec, run_turn
from edit3d.field import RadianceField, field_from_checkpoint
from edit3d.field.testing import TinyScene, cached_tiny_base
from edit3d.progress import Cancelled, CancelToken, ProgressEvent

ray = pytest.importorskip("ray")

from edit3d.editing.ray_pool import PoolSettings, RayEditorPool, start_local_ray  # noqa: E402

PACED = "edit3d.editing.testing:PacedEditor"
TINY_SETTINGS = EditorSettings(diffusion_steps=3)


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """One local Ray instance with two CPUs for the whole test session."""
    if not ray.is_initialized():
        start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyScene, Path]:
    return cached_tiny_base(
        tmp_path_factory.getbasetemp() / "view-edit-tiny-base", steps=30, num_views=6,
        resolution=24,
    )  # fmt: skip


def bright_mask(_name: str, image: np.ndarray, _spec: TurnSpec) -> np.ndarray:
    brightness = image.mean(axis=2)
    return (brightness > np.median(brightness)).astype(np.float32)


class Counting:
    """An `EditDispatcher` that counts the finished edits per view of the one it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.views: Counter[str] = Counter()

    @property
    def staleness(self) -> int:
        return self.inner.staleness

    def submit(self, job: EditJob) -> None:
        self.inner.submit(job)

    def collect(self, *, wait: bool, cancel: CancelToken | None = None) -> list[EditDone]:
        done = self.inner.collect(wait=wait, cancel=cancel)
        self.views.update(item.job.view_name for item in done)
        return done

    def cancel_pending(self) -> None:
        self.inner.cancel_pending()

    def stats(self) -> list[dict[str, Any]]:
        return self.inner.stats()


def run(
    checkpoint: Path,
    spec: TurnSpec,
    folder: Path,
    dispatcher: EditDispatcher,
    **kwargs: Any,
) -> RadianceField:
    torch.manual_seed(123)
    field = field_from_checkpoint(checkpoint)
    run_turn(field, spec, folder, None, bright_mask, dispatcher=dispatcher, **kwargs)
    return field


def saved_targets(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    return state["extra"]["targets"]["replaced"]


def test_pool_of_one_actor_with_zero_staleness_equals_sync_bit_for_bit(
    local_ray: None, base: tuple[TinyScene, Path], tmp_path: Path, single_thread: None
) -> None:
    _, checkpoint = base
    spec = TurnSpec(
        "make it blue", steps=8, edit_rate=2, seed=3, editor="ip2p-tiny",
        editor_settings=TINY_SETTINGS,
    )  # fmt: skip
    sync = run(checkpoint, spec, tmp_path / "sync", LocalDispatcher(load_editor("ip2p-tiny")))
    pool = RayEditorPool("ip2p-tiny", PoolSettings(editors=1, staleness=0))
    try:
        pooled = run(checkpoint, spec, tmp_path / "pool", pool)
        assert pool.stats()[0]["edits"] == 4
    finally:
        pool.shutdown()
    sync_targets, pool_targets = saved_targets(tmp_path / "sync"), saved_targets(tmp_path / "pool")
    assert sorted(sync_targets) == sorted(pool_targets) and len(sync_targets) == 4
    for name, target in sync_targets.items():
        assert torch.equal(target, pool_targets[name]), name
    for (name, a), b in zip(
        sync.model.state_dict().items(), pooled.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_two_actors_edit_every_view_as_often_as_sync(
    local_ray: None, base: tuple[TinyScene, Path], tmp_path: Path
) -> None:
    _, checkpoint = base
    spec = TurnSpec(
        "make it blue", steps=24, edit_rate=2, edit_count=2, editor=PACED,
        editor_settings=TINY_SETTINGS,
    )  # fmt: skip
    sync = Counting(LocalDispatcher(PacedEditor(0.0, inner=None)))
    run(checkpoint, spec, tmp_path / "sync", sync)
    pool = RayEditorPool(
        PACED, PoolSettings(editors=2, editor_options={"seconds": 0.4, "inner": None})
    )
    events: list[ProgressEvent] = []
    try:
        pooled = Counting(pool)
        run(checkpoint, spec, tmp_path / "pool", pooled, progress=events.append)
        stats = pool.stats()
    finally:
        pool.shutdown()
    assert sync.views == pooled.views and sum(sync.views.values()) == 24
    assert set(sync.views.values()) == {4}  # 12 rounds × 2 over 6 views
    assert all(s["edits"] > 0 for s in stats) and sum(s["edits"] for s in stats) == 24
    last = [e for e in events if e.phase == "turn"][-1]
    assert [s["editor"] for s in last.extra["editors"]] == ["editor-0", "editor-1"]
    assert all(s["device"].startswith("cpu") for s in stats)
    assert pool.staleness == 2  # default: as many rounds in flight as actors


def test_killed_actor_has_its_edit_requeued_and_the_turn_completes(
    local_ray: None, base: tuple[TinyScene, Path], tmp_path: Path
) -> None:
    _, checkpoint = base
    spec = TurnSpec(
        "make it blue", steps=16, edit_rate=2, editor=PACED, editor_settings=TINY_SETTINGS
    )
    pool = RayEditorPool(
        PACED, PoolSettings(editors=2, editor_options={"seconds": 0.8, "inner": None})
    )
    killed: list[int] = []

    def kill_a_busy_actor(_field: RadianceField, done: int) -> None:
        busy = [s["pid"] for s in pool.stats() if s["busy"]]
        if done >= 4 and not killed and busy:
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])

    try:
        counting = Counting(pool)
        result = run_turn_with(checkpoint, spec, tmp_path, counting, on_step=kill_a_busy_actor)
        stats = pool.stats()
    finally:
        pool.shutdown()
    assert killed and pool.requeued >= 1
    assert result.edits == 8 and sum(counting.views.values()) == 8
    assert sorted(counting.views.values()) == [1, 1, 1, 1, 2, 2]  # round-robin, none lost
    assert [s["alive"] for s in stats].count(False) == 1


def test_with_every_actor_gone_the_edits_run_here(
    local_ray: None, base: tuple[TinyScene, Path], tmp_path: Path
) -> None:
    _, checkpoint = base
    spec = TurnSpec(
        "make it blue", steps=8, edit_rate=2, editor=PACED, editor_settings=TINY_SETTINGS
    )
    pool = RayEditorPool(
        PACED, PoolSettings(editors=1, editor_options={"seconds": 0.5, "inner": None}),
        local_editor=lambda: PacedEditor(0.0, inner=None),
    )  # fmt: skip
    os.kill(pool.stats()[0]["pid"], signal.SIGKILL)
    try:
        result = run_turn_with(checkpoint, spec, tmp_path, pool)
    finally:
        pool.shutdown()
    assert result.edits == 4 and pool.requeued == 1


def test_cancel_stops_edits_in_flight_and_resume_neither_repeats_nor_skips(
    local_ray: None, base: tuple[TinyScene, Path], tmp_path: Path
) -> None:
    _, checkpoint = base
    spec = TurnSpec(
        "make it blue", steps=20, edit_rate=2, editor=PACED, editor_settings=TINY_SETTINGS
    )
    pool = RayEditorPool(
        PACED, PoolSettings(editors=2, editor_options={"seconds": 0.6, "inner": None})
    )
    cancel = CancelToken()

    def cancel_at_9(event: ProgressEvent) -> None:
        if event.phase == "turn" and event.step == 9:
            cancel.cancel()

    try:
        with pytest.raises(Cancelled):
            run_turn_with(checkpoint, spec, tmp_path, pool, progress=cancel_at_9, cancel=cancel)
        assert not any(s["busy"] for s in pool.stats())  # stopped, not left running
        saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["extra"]
        pending = saved["pending"]
        assert pending and saved["turn"]["submitted"] == saved["turn"]["edits"] + len(pending)
        resumed = Counting(pool)
        result = run_turn_with(
            checkpoint, spec, tmp_path, resumed, resume_from=tmp_path / "checkpoint.pt"
        )
    finally:
        pool.shutdown()
    # 10 rounds of one view each: every round applied exactly once across the two runs.
    assert result.edits == 10
    assert sum(resumed.views.values()) == 10 - saved["turn"]["edits"]


def run_turn_with(
    checkpoint: Path, spec: TurnSpec, folder: Path, dispatcher: Any, **kwargs: Any
) -> Any:
    field = field_from_checkpoint(checkpoint)
    return run_turn(field, spec, folder, None, bright_mask, dispatcher=dispatcher, **kwargs)


@pytest.mark.slow
def test_two_turns_on_a_pool_keep_the_first_edit(
    local_ray: None, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    scene, checkpoint = cached_tiny_base(tmp_path_factory.getbasetemp() / "core-tiny-base")
    options = {"seconds": 0.05, "inner": ObjectPainter(scene)}
    pool = RayEditorPool(PACED, PoolSettings(editors=2, editor_options=options))
    field = field_from_checkpoint(checkpoint)
    fast = {"steps": 100, "edit_rate": 2, "edit_count": 2, "editor": PACED}
    try:
        run_turn(field, TurnSpec("paint sphere_a red", **fast), tmp_path / "1", None,
                 dispatcher=pool)  # fmt: skip
        run_turn(field, TurnSpec("paint sphere_b blue", **fast), tmp_path / "2", None,
                 dispatcher=pool)  # fmt: skip
    finally:
        pool.shutdown()
    for object_id, colour in (("sphere_a", (0.9, 0.1, 0.1)), ("sphere_b", (0.1, 0.2, 0.9))):
        errors = []
        for view in field.views[::4]:
            mask = scene.object_mask(object_id, view)
            if mask.sum() >= 10:
                errors.append(np.abs(field.render(view).rgb[mask] - np.array(colour)).mean())
        assert float(np.mean(errors)) < 0.12, object_id


def test_edit_command_runs_its_turns_on_an_editor_pool(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edit3d.cli import main
    from edit3d.field.testing import make_tiny_scene
    from edit3d.workspace import Workspace

    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    ws = tmp_path / "ws"
    assert main(["train", str(scene.root), "-w", str(ws), "--preset", "tiny", "--steps", "4",
                 "--device", "cpu"]) == 0  # fmt: skip
    edit = ["edit", "-w", str(ws), "--editor", "ip2p-tiny", "--steps", "4", "--edit-rate", "2",
            "--diffusion-steps", "2", "--device", "cpu", "--turn", "make it red"]  # fmt: skip
    assert main([*edit, "--staleness", "1"]) == 2  # a setting of a pool, without one
    assert "--staleness applies to an editor pool" in capsys.readouterr().err
    assert main([*edit, "--editors", "2"]) == 0
    assert "turn-0001: 'make it red' finished" in capsys.readouterr().out
    state = json.loads((Workspace.open(ws).root / "turns" / "turn-0001" / "turn_state.json")
                       .read_text())  # fmt: skip
    assert state["edits"] == state["submitted"] == 2
    assert ray.is_initialized()  # the session's instance was borrowed, not stopped
