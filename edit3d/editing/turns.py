"""One editing turn (paper Sec. 3.1): train the field toward iteratively edited views.

A turn starts from the current model k−1. In Edit3D mode it first renders every training
view from that model ("pre-renders", keyed by image file name); those are both the editor's
condition images and the initial training targets, so what earlier turns changed is what the
editor is asked to keep. IN2N mode (the ablation, `mode="in2n"`) conditions on the original
dataset images and starts from them, as instruct-nerf2nerf does.

The turn is the field's training (`edit3d.training.TrainingRun`) with one override: before
every `edit_rate`-th iteration, `edit_count` views (round-robin; every view with
`update="rounds"`) are rendered from the current model and handed to an edit dispatcher
(`edit3d.editing.dispatch`), which edits them and fuses each with its pre-render through the
view's mask; the results replace the views' targets in order at step boundaries — at once
without an editor pool, within the pool's staleness with one. Its steps use the field
preset's turn objective (`config.turn_objective()`: the paper preset trains as IN2N's
`in2n` does, L1 + LPIPS on 32×32 patches at 16,384 rays; None: the backend's own loss).

On disk (`turn_dir`): `params.json` (the spec), `prerenders/` (npz + PNGs), `masks/`,
`checkpoint.pt` (resumable: field + optimizer + targets + round-robin + RNG + the edits
submitted and not yet applied, with their renders) and
`turn_state.json` (its step, edits and timings, readable without loading the model).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edit3d.editing.dispatch import EditDispatcher, EditJob, EditRounds, LocalDispatcher
from edit3d.editing.editors import Editor, reads_render
from edit3d.editing.spec import TurnSpec
from edit3d.editing.view_edit import (
    MaskProvider,
    ViewInputs,
    checked_mask,
    configured_editor,
    edit_seed,
    resized_image,
)
from edit3d.field.objective import require_weights
from edit3d.field.radiance import RadianceField, StepResult
from edit3d.field.targets import TargetStore
from edit3d.progress import (
    Cancelled,
    CancelToken,
    JobProgress,
    PhasePlan,
    ProgressCallback,
    ProgressEvent,
    no_progress,
)
from edit3d.training import StepHook, TrainingRun, resume_state

CHECKPOINT_NAME = "checkpoint.pt"
STATE_NAME = "turn_state.json"

# Expected cost of one step of each phase, in full-view renders: the phases' shares of the one
# progress bar and the ETA of phases not yet started (measured costs take over as they run).
# Paper Tab. 2 (RTX 3090): 0.021 s per plain training iteration and ~2.5 s per edit (44.62 min
# for 10k turn iterations with an edit every 10); a nerfacto full-view render ~0.5 s; ADSS's
# SAM automatic masks take several seconds per view.
_TRAIN_STEP_COST = 0.04
_EDIT_COST = 5.0
_MASK_COST = 8.0


__all__ = ["MaskProvider", "StepHook", "TurnResult", "TurnSpec", "run_turn"]


@dataclass
class TurnResult:
    """How a finished turn went."""

    checkpoint: Path
    """The field after the turn (also the resumable state)."""
    steps: int
    """Iterations trained in this turn (all runs of it together)."""
    edits: int
    """Views edited during the turn."""
    loss: float | None
    """Training loss of the last iteration."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: prerender, masks, train (NeRF steps), edit (editor calls)."""


@dataclass
class _TurnState:
    """What changes during a turn besides the field (saved in every checkpoint)."""

    next_step: int = 0
    next_view: int = 0
    edits: int = 0
    """Edits applied to targets (in submission order)."""
    submitted: int = 0
    """Edits handed to the dispatcher; those past `edits` are in the checkpoint's "pending"."""
    last_round: int = -1
    """The iteration of the last edit round submitted (a resume never submits it twice)."""
    last_edited: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def add_time(self, phase: str, seconds: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + seconds


def run_turn(
    field_: RadianceField,
    spec: TurnSpec,
    turn_dir: str | Path,
    editor: Editor | None,
    mask_provider: MaskProvider | None = None,
    *,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
    resume_from: str | Path | None = None,
    checkpoint_every: int | None = None,
    on_step: StepHook | None = None,
    dispatcher: EditDispatcher | None = None,
) -> TurnResult:
    """Run (or resume) one turn on `field_` in place; see the module docstring.

    Periodic checkpoints go to `turn_dir/checkpoint.pt` every `checkpoint_every` iterations
    (default: the preset's). A cancel saves a resumable checkpoint and raises `Cancelled`.
    `on_step(field_, n)` runs after each iteration n (its time is the "preview" phase).
    `dispatcher` runs the edits (default: `editor` in this process, before the iteration
    that asked for them); with one, `editor` may be None.
    """
    if editor is None and dispatcher is None:
        raise ValueError("run_turn needs an editor or a dispatcher, got neither")
    require_weights(field_.config.turn_objective())
    turn_dir = Path(turn_dir)
    turn_dir.mkdir(parents=True, exist_ok=True)
    (turn_dir / "params.json").write_text(json.dumps(spec.to_dict(), indent=2))
    state, saved_targets, saved_jobs = _TurnState(), None, []
    if resume_from is not None:
        extra = resume_state(field_, resume_from)
        state, saved_targets = _TurnState(**extra["turn"]), extra["targets"]
        state.submitted = max(state.submitted, state.edits)
        saved_jobs = list(extra.get("pending", []))
    progress = JobProgress(_turn_phases(field_, spec, mask_provider is not None), progress)
    inputs = _prepare_inputs(field_, spec, turn_dir, editor, mask_provider, state, progress, cancel)
    targets = field_.make_targets(inputs.initial_targets)
    if saved_targets is not None:
        targets.load_state_dict(saved_targets)
    training = _TurnTraining(
        field_, targets, spec, inputs, state, turn_dir,
        dispatcher or LocalDispatcher(inputs.editor), saved_jobs,  # type: ignore[arg-type]
        checkpoint_every=checkpoint_every or field_.config.checkpoint_every,
        on_step=on_step, progress=progress, cancel=cancel,
    )  # fmt: skip
    result = training.run()
    training.save()
    return TurnResult(
        checkpoint=turn_dir / CHECKPOINT_NAME,
        steps=training.total,
        edits=state.edits,
        loss=result.loss if result is not None else None,
        timings=dict(state.timings),
    )


def _turn_steps(field_: RadianceField, spec: TurnSpec) -> int:
    return field_.config.turn_steps if spec.steps is None else spec.steps


def _turn_phases(field_: RadianceField, spec: TurnSpec, masked: bool) -> list[PhasePlan]:
    """The turn's phases in order, for its one progress bar."""
    views = len(field_.views)
    per_update = views if spec.update == "rounds" else spec.edit_count
    step_cost = _TRAIN_STEP_COST + _EDIT_COST * per_update / spec.edit_rate
    training = PhasePlan("turn", _turn_steps(field_, spec), step_cost)
    if spec.mode == "in2n":
        return [training]
    return [
        PhasePlan("prerender", views),
        PhasePlan("masks", views if masked else 0, _MASK_COST),
        training,
    ]


class _TurnTraining(TrainingRun):
    """The field's training with the turn's target updates (Sec. 3.1) and its own state."""

    def __init__(
        self,
        field_: RadianceField,
        targets: TargetStore,
        spec: TurnSpec,
        inputs: _TurnInputs,
        state: _TurnState,
        turn_dir: Path,
        dispatcher: EditDispatcher,
        saved_jobs: list[dict[str, Any]],
        **run: Any,
    ) -> None:
        super().__init__(
            field_, targets, total=_turn_steps(field_, spec), lr=spec.lr,
            done=state.next_step, phase="turn",
            checkpoint=turn_dir / CHECKPOINT_NAME, timings=state.timings,
            objective=field_.config.turn_objective(), **run,
        )  # fmt: skip
        self.spec, self.inputs, self.state, self.turn_dir = spec, inputs, state, turn_dir
        self.names = [view.name for view in field_.views]
        self.dispatcher = dispatcher
        self.rounds = EditRounds(dispatcher, self._apply_edit)
        self.rounds.submit([self._saved_job(saved) for saved in saved_jobs])

    def before_iteration(self, i: int) -> None:
        new_round = i % self.spec.edit_rate == 0 and i > self.state.last_round
        if not (new_round or self.rounds.pending):
            return
        with self.timed("edit"):
            if new_round:
                self.rounds.submit(self._round_jobs(i))
            self.rounds.settle(self.cancel)

    def run(self) -> StepResult | None:
        """Train, then wait for the edits still in flight (a cancel there saves as well)."""
        try:
            result = super().run()  # saves on cancel itself
            with self.timed("edit"):
                self.rounds.drain(self.cancel)
        except BaseException as error:
            self.dispatcher.cancel_pending()
            if isinstance(error, Cancelled) and self.next_step >= self.total:
                self.save()  # cancelled while draining
            raise
        return result

    def checkpoint_extra(self) -> dict[str, Any]:
        self.state.next_step = self.next_step
        return {
            "turn": dataclasses.asdict(self.state),
            "targets": self.targets.state_dict(),
            "pending": [_job_record(job) for job in self.rounds.pending.values()],
        }

    def _round_jobs(self, step: int) -> list[EditJob]:
        """Render the round's `edit_count` views (round-robin; every view with
        `update="rounds"`) from the current field."""
        count = len(self.names) if self.spec.update == "rounds" else self.spec.edit_count
        jobs = []
        for k in range(count):
            name = self.names[(self.state.next_view + k) % len(self.names)]
            height, width = self.targets.size_of(name)
            before = self._before(name, height, width)
            seed = edit_seed(self.spec.seed, step, k)
            jobs.append(self._job(self.state.submitted + k, step, k, name, seed, before))
        self.state.next_view = (self.state.next_view + count) % len(self.names)
        self.state.submitted += len(jobs)
        self.state.last_round = step
        return jobs

    def _before(self, name: str, height: int, width: int) -> np.ndarray:
        """The view's render, or its condition for an editor that reads no render (the
        render would be spent for nothing; see `edit3d.editing.editors.reads_render`)."""
        editor = self.inputs.editor
        if editor is not None and not reads_render(editor):
            return resized_image(self.inputs.conditions[name], height, width)
        return self.field.render(self.field.view(name), width=width, height=height).rgb

    def _job(
        self, seq: int, step: int, index: int, name: str, seed: int, before: np.ndarray
    ) -> EditJob:
        view_inputs = ViewInputs(
            condition=self.inputs.conditions[name],
            base=self.inputs.prerenders[name] if self.spec.mode == "edit3d" else None,
            mask=self.inputs.masks.get(name),
        )
        return EditJob(seq, step, index, name, seed, before, view_inputs, self.spec)

    def _saved_job(self, saved: dict[str, Any]) -> EditJob:
        return self._job(
            int(saved["seq"]), int(saved["step"]), int(saved["index"]), str(saved["view"]),
            int(saved["seed"]), saved["before"].numpy(),
        )  # fmt: skip

    def _apply_edit(self, job: EditJob, after: np.ndarray) -> None:
        self.targets.replace(job.view_name, after)
        self.state.edits += 1
        self.state.last_edited = job.view_name

    def after_save(self) -> None:
        # A small readable copy, so the history can show timings without loading the model.
        tmp = self.turn_dir / f".{STATE_NAME}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(self.state), indent=2))
        tmp.replace(self.turn_dir / STATE_NAME)

    def progress_event(self, event: ProgressEvent) -> ProgressEvent:
        last = self.state.last_edited
        extra: dict[str, object] = {"edited_view": last, "edits": self.state.edits}
        editors = self.dispatcher.stats()
        if editors:
            extra["editors"] = editors
        return dataclasses.replace(
            event, message=f"last edited: {last}" if last else "", extra=extra
        )


def _job_record(job: EditJob) -> dict[str, Any]:
    """What a checkpoint keeps of an edit in flight: enough to submit it again unchanged."""
    return {
        "seq": job.seq, "step": job.step, "index": job.index, "view": job.view_name,
        "seed": job.seed, "before": torch.from_numpy(np.ascontiguousarray(job.before)),
    }  # fmt: skip


@dataclass
class _TurnInputs:
    """Fixed for the whole turn: pre-renders, condition images, masks, initial targets."""

    editor: Editor
    prerenders: dict[str, np.ndarray]
    conditions: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    initial_targets: dict[str, np.ndarray]


def _prepare_inputs(
    field_: RadianceField,
    spec: TurnSpec,
    turn_dir: Path,
    editor: Editor,
    mask_provider: MaskProvider | None,
    state: _TurnState,
    progress: ProgressCallback,
    cancel: CancelToken | None,
) -> _TurnInputs:
    if spec.mode == "in2n":
        images = field_.dataset_images()
        return _TurnInputs(configured_editor(editor, spec), {}, images, {}, images)
    started = time.monotonic()
    prerenders = load_or_render_prerenders(field_, turn_dir / "prerenders", progress, cancel)
    if "prerender" not in state.timings:
        state.add_time("prerender", time.monotonic() - started)
    started = time.monotonic()
    masks = load_or_compute_masks(prerenders, spec, mask_provider, turn_dir / "masks", progress)
    if "masks" not in state.timings:
        state.add_time("masks", time.monotonic() - started)
    return _TurnInputs(configured_editor(editor, spec), prerenders, prerenders, masks, prerenders)


def load_or_render_prerenders(
    field_: RadianceField,
    folder: Path,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> dict[str, np.ndarray]:
    """Every training view rendered from the current model at its dataset image size.

    Saved once (`prerenders.npz` + PNGs, keyed by file name) and reused on resume, so a
    resumed turn conditions on the model the turn started from, not on a half-trained one.
    """
    archive = folder / "prerenders.npz"
    if archive.is_file():
        return load_image_archive(archive)
    prerenders: dict[str, np.ndarray] = {}
    for i, view in enumerate(field_.views):
        if cancel is not None:
            cancel.raise_if_cancelled()
        height, width = field_.training_size(view)
        prerenders[view.name] = field_.render(view, width=width, height=height).rgb
        progress(ProgressEvent("prerender", i + 1, len(field_.views), message=view.name))
    save_image_archive(archive, prerenders, pngs=True)
    return prerenders


def load_or_compute_masks(
    prerenders: dict[str, np.ndarray],
    spec: TurnSpec,
    mask_provider: MaskProvider | None,
    folder: Path,
    progress: ProgressCallback = no_progress,
) -> dict[str, np.ndarray]:
    """Each view's soft mask, computed once from its pre-render at turn start (cached)."""
    if mask_provider is None:
        return {}
    archive = folder / "masks.npz"
    if archive.is_file():
        return load_image_archive(archive)
    masks: dict[str, np.ndarray] = {}
    for i, (name, image) in enumerate(prerenders.items()):
        mask = mask_provider(name, image, spec)
        if mask is not None:
            masks[name] = checked_mask(name, mask, image.shape[:2])
        progress(ProgressEvent("masks", i + 1, len(prerenders), message=name))
    save_image_archive(archive, masks, pngs=True)
    return masks


# --- image archives ----------------------------------------------------------------------


def save_image_archive(path: Path, images: dict[str, np.ndarray], *, pngs: bool = False) -> None:
    """Images keyed by view name in one npz (atomic), plus optional PNGs for people."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(images)
    arrays = {
        f"image_{i:05d}": np.asarray(images[n], dtype=np.float32) for i, n in enumerate(names)
    }
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, names=np.array(names, dtype=str), **arrays)
    tmp.replace(path)
    if pngs:
        for name in names:
            pixels = np.round(np.clip(images[name], 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(path.parent / (safe_file_name(name) + ".png"))


def load_image_archive(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        names = [str(n) for n in data["names"]]
        return {name: data[f"image_{i:05d}"] for i, name in enumerate(names)}


def safe_file_name(view_name: str) -> str:
    """A view name ("images/frame_00001.png") as one flat file name stem."""
    stem = view_name.removeprefix("./").replace("/", "__").replace("\\", "__")
    return stem.rsplit(".", 1)[0] if "." in stem else stem
