"""A scene on disk: its base field and a history of turns (parents, kinds, statuses).

    <root>/
      workspace.json              the history (written atomically; the only index)
      base/                       checkpoint.pt, params.json
      turns/<turn_id>/            turn.json, params.json, checkpoint.pt, prerenders/, masks/

Every node has a parent (the base has none), a kind (base | edit | refine) and a status
(running | interrupted | finished | failed | cancelled). `head` is the node new turns start
from; `checkout` moves it to any finished node, and a turn started there branches. Nothing
finished is ever overwritten: a node is written only while it runs. A process killed
mid-turn leaves its node "running"; `Workspace.open(root).recover()` reports it
"interrupted", and `resume_turn` continues it from its last periodic checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edit3d.editing.dispatch import EditDispatcher
from edit3d.editing.turns import (
    CHECKPOINT_NAME,
    STATE_NAME,
    Editor,
    MaskProvider,
    TurnSpec,
    run_turn,
)
from edit3d.field.catalogue import DEFAULT_PRESET
from edit3d.field.radiance import RadianceField, RenderResult
from edit3d.field.registry import (
    DEFAULT_BACKEND,
    config_from_dict,
    field_from_checkpoint,
    field_from_dataset,
    field_from_nerfstudio_run,
    get_preset,
)
from edit3d.progress import Cancelled, CancelToken, ProgressCallback, no_progress
from edit3d.scene.cameras import CameraView
from edit3d.training import StepHook, TrainingRun

WORKSPACE_FILE = "workspace.json"
WORKSPACE_VERSION = 1
BASE_ID = "base"

NodeKind = Literal["base", "edit", "refine"]
NodeStatus = Literal["running", "interrupted", "finished", "failed", "cancelled"]


@dataclass
class TurnRecord:
    """One node of the history."""

    id: str
    """"base" or "turn-NNNN"."""
    parent: str | None
    """The node this one started from (None for the base)."""
    kind: NodeKind
    """base (dataset fit), edit (a turn, Sec. 3.1), refine (super-resolution fine-tune)."""
    status: NodeStatus
    """Where the node stands."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The node's parameters (a TurnSpec as a dict for edits)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase (load, prerender, masks, train, edit, total), as in the paper's Tab. 2."""
    paths: dict[str, str] = field(default_factory=dict)
    """Files of the node relative to the workspace root: dir, checkpoint."""
    created: float = 0.0
    """Unix time the node was started."""
    finished: float | None = None
    """Unix time it finished (any final status)."""
    steps: int = 0
    """Training iterations done."""
    message: str = ""
    """Why it failed, or other notes."""
    owner: dict[str, Any] = field(default_factory=dict)
    """Host and process id of the process running it (to tell a live run from a dead one)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def turn_spec(self) -> TurnSpec | None:
        return TurnSpec.from_dict(self.spec) if self.kind == "edit" else None


class Workspace:
    """A scene's base and turn history on disk (see the module docstring)."""

    def __init__(self, root: Path, data: dict[str, Any], device: str = "cpu") -> None:
        self.root = root
        self.device = device
        self._data = data
        self._fields: dict[str, RadianceField] = {}

    # --- create / open ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        dataset: str | Path | None = None,
        nerfstudio_run: str | Path | None = None,
        preset: str = DEFAULT_PRESET,
        backend: str | None = None,
        config: Any | None = None,
        device: str = "cpu",
    ) -> Workspace:
        """A new workspace over a dataset (base to be trained) or an ns-train run (base given).

        `config` (default: `backend`'s `preset`; backend None = the registry's default) is a
        backend's settings; its type names the field backend the workspace uses. An ns-train
        run's model names its own backend."""
        root = Path(root)
        if (dataset is None) == (nerfstudio_run is None):
            raise ValueError("give exactly one of dataset or nerfstudio_run")
        if (root / WORKSPACE_FILE).exists():
            raise ValueError(f"root already holds a workspace: {str(root)!r}")
        if backend is not None and config is not None and backend != config.backend:
            raise ValueError(f"backend {backend!r} and config of {config.backend!r} disagree")
        config = config or get_preset(preset, backend or DEFAULT_BACKEND)
        data = {
            "version": WORKSPACE_VERSION,
            "backend": config.backend,
            "dataset": str(Path(dataset).resolve()) if dataset is not None else None,
            "nerfstudio_run": str(Path(nerfstudio_run).resolve()) if nerfstudio_run else None,
            "preset": preset,
            "config": config.to_dict(),
            "head": None,
            "turns": [],
        }
        root.mkdir(parents=True, exist_ok=True)
        workspace = cls(root, data, device)
        workspace._write()
        if nerfstudio_run is not None:
            workspace._import_nerfstudio_run(Path(nerfstudio_run))
        return workspace

    @classmethod
    def open(cls, root: str | Path, *, device: str = "cpu") -> Workspace:
        root = Path(root)
        path = root / WORKSPACE_FILE
        if not path.is_file():
            raise ValueError(f"root is not a workspace (no {WORKSPACE_FILE}): {str(root)!r}")
        data = json.loads(path.read_text())
        if data.get("version") != WORKSPACE_VERSION:
            raise ValueError(f"{path}: unsupported workspace version {data.get('version')!r}")
        return cls(root, data, device)

    def recover(self) -> list[str]:
        """Mark nodes left "running" by a process that is gone as "interrupted"; their ids."""
        stale = [r for r in self.turns if r.status == "running" and not _owner_alive(r.owner)]
        for record in stale:
            self._update(record.id, status="interrupted", message="the process running it ended")
        return [r.id for r in stale]

    # --- history ---------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """Name of the field backend (`edit3d.field.registry`) of every node here."""
        return str(self._data.get("backend", DEFAULT_BACKEND))

    @property
    def config(self) -> Any:
        """The backend's settings the base was (or will be) trained with."""
        return config_from_dict(self._data["config"], self.backend)

    @property
    def dataset(self) -> Path | None:
        """The dataset folder the workspace was created over (None: an imported ns-train run)."""
        recorded = self._data.get("dataset")
        return Path(recorded) if recorded else None

    @property
    def turns(self) -> list[TurnRecord]:
        """All nodes, oldest first."""
        return [TurnRecord.from_dict(d) for d in self._data["turns"]]

    @property
    def head(self) -> str | None:
        return self._data["head"]

    def turn(self, turn_id: str) -> TurnRecord:
        for data in self._data["turns"]:
            if data["id"] == turn_id:
                return TurnRecord.from_dict(data)
        raise ValueError(f"turn_id must name a node of this workspace, got {turn_id!r}")

    def lineage(self, turn_id: str | None = None) -> list[TurnRecord]:
        """The node and its ancestors, base first."""
        chain = []
        node: str | None = turn_id or self.head
        while node is not None:
            record = self.turn(node)
            chain.append(record)
            node = record.parent
        return chain[::-1]

    def checkout(self, turn_id: str) -> None:
        """Make a finished node the head: the next turn starts (branches) from it."""
        self._require_finished(turn_id)
        self._data["head"] = turn_id
        self._write()

    # --- fields ----------------------------------------------------------------------

    def checkpoint_path(self, turn_id: str) -> Path:
        return self.root / self.turn(turn_id).paths["checkpoint"]

    def load_field(self, turn_id: str | None = None) -> RadianceField:
        """A fresh field loaded from a finished node (default: head)."""
        turn_id = turn_id or self.head
        if turn_id is None:
            raise ValueError("this workspace has no finished node yet (train the base first)")
        self._require_finished(turn_id)
        return field_from_checkpoint(self.checkpoint_path(turn_id), device=self.device)

    def render(
        self,
        view: CameraView,
        turn_id: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> RenderResult:
        """Render a world-frame camera from a node (default: head); fields stay cached."""
        turn_id = turn_id or self.head
        if turn_id not in self._fields:
            self._fields[turn_id] = self.load_field(turn_id)  # type: ignore[index]
        return self._fields[turn_id].render(view, width=width, height=height)  # type: ignore[index]

    # --- base ------------------------------------------------------------------------

    def train_base(
        self,
        *,
        steps: int | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        seed: int = 0,
        on_step: StepHook | None = None,
    ) -> TurnRecord:
        """Fit the base field to the dataset (resuming an interrupted base training).

        `on_step(field, n)` runs after each iteration n, e.g. to render a live preview.
        """
        existing = next((r for r in self.turns if r.id == BASE_ID), None)
        if existing is not None and existing.status == "finished":
            raise ValueError("the base is already trained; start turns from it")
        if existing is not None and existing.status == "running":
            raise ValueError("the base is being trained by a running process (recover() first?)")
        if self._data["dataset"] is None:
            raise ValueError("this workspace has no dataset to train a base on")
        total = steps or self.config.base_steps
        record = existing or self._start_node(BASE_ID, None, "base", {"steps": total, "seed": seed})
        if existing is not None:
            self._update(BASE_ID, status="running", owner=_owner(), message="")
        checkpoint = self.root / record.paths["checkpoint"]
        with self.node_outcome(BASE_ID) as timings:
            started = time.monotonic()
            if checkpoint.is_file():
                field_ = field_from_checkpoint(checkpoint, device=self.device)
            else:
                field_ = field_from_dataset(
                    self._data["dataset"], self.config, self.device, seed=seed
                )
            targets = field_.make_targets(field_.dataset_images())
            timings["load_s"] = time.monotonic() - started
            training = TrainingRun(
                field_, targets, total=total, lr=self.config.base_lr, done=field_.step,
                phase="train_base", checkpoint=checkpoint,
                checkpoint_every=self.config.checkpoint_every, on_step=on_step,
                progress=progress, cancel=cancel,
            )  # fmt: skip
            training.run()
            timings["train_s"] = training.timings["train"]
            if on_step is not None:
                timings["preview_s"] = training.timings.get("preview", 0.0)
            field_.save_checkpoint(checkpoint)
        self._finish(BASE_ID, steps=total)
        return self.turn(BASE_ID)

    def _import_nerfstudio_run(self, config_yml: Path) -> None:
        record = self._start_node(BASE_ID, None, "base", {"nerfstudio_run": str(config_yml)})
        with self.node_outcome(BASE_ID) as timings:
            started = time.monotonic()
            field_ = field_from_nerfstudio_run(config_yml, self.device)
            field_.save_checkpoint(self.root / record.paths["checkpoint"])
            timings["load_s"] = time.monotonic() - started
        self._data["config"] = field_.config.to_dict()
        self._data["backend"] = field_.backend
        self._finish(BASE_ID, steps=field_.step)

    # --- turns -----------------------------------------------------------------------

    def run_turn(
        self,
        spec: TurnSpec,
        parent: str | None = None,
        *,
        editor: Editor | None = None,
        mask_provider: MaskProvider | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        checkpoint_every: int | None = None,
        on_step: StepHook | None = None,
        dispatcher: EditDispatcher | None = None,
    ) -> TurnRecord:
        """Run one editing turn from `parent` (default: head); the new node becomes head.

        `on_step(field, n)` runs after each iteration n, e.g. to render a live preview.
        `dispatcher` runs the edits elsewhere (an editor pool); then no editor loads here.
        """
        parent = parent or self.head
        if parent is None:
            raise ValueError("parent: this workspace has no finished node yet (train the base)")
        self._require_finished(parent)
        record = self._start_node(self._next_turn_id(), parent, "edit", spec.to_dict())
        return self._run_turn_node(
            record, editor, mask_provider, progress, cancel, checkpoint_every, on_step, dispatcher
        )

    def resume_turn(
        self,
        turn_id: str,
        *,
        editor: Editor | None = None,
        mask_provider: MaskProvider | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        checkpoint_every: int | None = None,
        on_step: StepHook | None = None,
        dispatcher: EditDispatcher | None = None,
    ) -> TurnRecord:
        """Continue an interrupted or cancelled node from its last checkpoint (`on_step`,
        `dispatcher`: as in `run_turn`).

        Edit turns and refine nodes resume; a refine node reuses its saved upscaled targets
        (`editor`, `mask_provider` and `checkpoint_every` do not apply to it).
        """
        kind = self.turn(turn_id).kind
        if kind == "refine":
            from edit3d.refine.node import resume_refine

            return resume_refine(self, turn_id, progress=progress, cancel=cancel, on_step=on_step)
        record = self.reopen_node(turn_id, "edit")
        return self._run_turn_node(
            record, editor, mask_provider, progress, cancel, checkpoint_every, on_step, dispatcher
        )

    def _run_turn_node(
        self,
        record: TurnRecord,
        editor: Editor | None,
        mask_provider: MaskProvider | None,
        progress: ProgressCallback,
        cancel: CancelToken | None,
        checkpoint_every: int | None,
        on_step: StepHook | None,
        dispatcher: EditDispatcher | None = None,
    ) -> TurnRecord:
        """Run a running edit node's turn, from its checkpoint if it has one (a resume)."""
        spec = record.turn_spec
        assert spec is not None and record.parent is not None
        if dispatcher is None:
            editor = editor or load_editor_for(spec.editor, self.device)
        turn_dir = self.root / record.paths["dir"]
        checkpoint = turn_dir / CHECKPOINT_NAME
        with self.node_outcome(record.id) as timings:
            started = time.monotonic()
            field_ = self.load_field(record.parent)
            timings["load_s"] = timings.get("load_s", 0.0) + time.monotonic() - started
            try:
                result = run_turn(
                    field_,
                    spec,
                    turn_dir,
                    editor,
                    mask_provider,
                    progress=progress,
                    cancel=cancel,
                    resume_from=checkpoint if checkpoint.is_file() else None,
                    checkpoint_every=checkpoint_every,
                    on_step=on_step,
                    dispatcher=dispatcher,
                )
            finally:
                timings.update(_turn_timings(turn_dir))
        self._finish(record.id, steps=result.steps)
        self._data["head"] = record.id
        self._write()
        return self.turn(record.id)

    def discard_turn(self, turn_id: str) -> None:
        """Delete an unfinished (interrupted, cancelled or failed) node and its files."""
        record = self.turn(turn_id)
        if record.status in ("finished", "running"):
            raise ValueError(f"turn_id must name an unfinished, stopped node, got {record.status}")
        if any(r.parent == turn_id for r in self.turns):
            raise ValueError(f"turn {turn_id!r} has children; it cannot be discarded")
        self._data["turns"] = [d for d in self._data["turns"] if d["id"] != turn_id]
        self._write()
        shutil.rmtree(self.root / record.paths["dir"], ignore_errors=True)

    # --- nodes (also for other kinds, e.g. refine) -----------------------------------

    def start_node(self, kind: NodeKind, parent: str, params: dict[str, Any]) -> TurnRecord:
        """Open a "running" node of `kind` under finished `parent`; returns its record."""
        self._require_finished(parent)
        return self._start_node(self._next_turn_id(), parent, kind, params)

    def reopen_node(self, turn_id: str, kind: NodeKind) -> TurnRecord:
        """Mark an interrupted or cancelled node of `kind` running again (to resume it)."""
        record = self.turn(turn_id)
        if record.kind != kind or record.status not in ("interrupted", "cancelled"):
            raise ValueError(
                f"turn_id must name an interrupted or cancelled {kind} node, got {turn_id!r} "
                f"({record.kind}, {record.status})"
            )
        self._update(turn_id, status="running", owner=_owner(), message="")
        return self.turn(turn_id)

    def finish_node(
        self, turn_id: str, field_: RadianceField, timings: dict[str, float] | None = None
    ) -> TurnRecord:
        """Save `field_` as the node's result, mark it finished and make it head."""
        record = self.turn(turn_id)
        if record.status != "running":
            raise ValueError(f"turn_id must name a running node, got {record.status}")
        field_.save_checkpoint(self.root / record.paths["checkpoint"])
        self._update(turn_id, timings={**record.timings, **(timings or {})})
        self._finish(turn_id, steps=field_.step)
        self._data["head"] = turn_id
        self._write()
        return self.turn(turn_id)

    def fail_node(self, turn_id: str, status: NodeStatus, message: str = "") -> None:
        """Mark a running node failed, cancelled or interrupted."""
        if status not in ("failed", "cancelled", "interrupted"):
            raise ValueError(f"status must be failed, cancelled or interrupted, got {status!r}")
        self._update(turn_id, status=status, message=message, finished=time.time())

    def node_dir(self, turn_id: str) -> Path:
        return self.root / self.turn(turn_id).paths["dir"]

    @contextmanager
    def node_outcome(self, node_id: str) -> Iterator[dict[str, float]]:
        """Track a running node's timings (a dict to add phases to, saved with the node's
        total at the end); record cancel/failure/interrupt if the block ends early."""
        timings = dict(self.turn(node_id).timings)
        started = time.monotonic()
        try:
            yield timings
        except Cancelled:
            self._stop(node_id, "cancelled", "cancelled by the user", timings, started)
            raise
        except (KeyboardInterrupt, SystemExit):
            self._stop(node_id, "interrupted", "interrupted", timings, started)
            raise
        except Exception as error:
            self._stop(node_id, "failed", f"{type(error).__name__}: {error}", timings, started)
            raise
        timings["total_s"] = timings.get("total_s", 0.0) + time.monotonic() - started
        self._update(node_id, timings=timings)

    # --- internals -------------------------------------------------------------------

    def _start_node(
        self, node_id: str, parent: str | None, kind: NodeKind, params: dict[str, Any]
    ) -> TurnRecord:
        folder = BASE_ID if node_id == BASE_ID else f"turns/{node_id}"
        if (self.root / folder).exists() and node_id != BASE_ID:
            raise RuntimeError(f"refusing to reuse existing folder {folder}")
        record = TurnRecord(
            id=node_id,
            parent=parent,
            kind=kind,
            status="running",
            spec=params,
            paths={"dir": folder, "checkpoint": f"{folder}/{CHECKPOINT_NAME}"},
            created=time.time(),
            owner=_owner(),
        )
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        _atomic_write_json(self.root / folder / "params.json", params)
        self._data["turns"].append(_json_ready(dataclasses.asdict(record)))
        self._write()
        return record

    def _stop(
        self,
        node_id: str,
        status: NodeStatus,
        message: str,
        timings: dict[str, float],
        started: float,
    ) -> None:
        timings["total_s"] = timings.get("total_s", 0.0) + time.monotonic() - started
        self._update(node_id, status=status, message=message, timings=timings, finished=time.time())

    def _finish(self, node_id: str, *, steps: int) -> None:
        self._update(node_id, status="finished", steps=steps, finished=time.time(), owner={})
        if node_id == BASE_ID:
            self._data["head"] = BASE_ID
            self._write()

    def _update(self, node_id: str, **changes: Any) -> None:
        for data in self._data["turns"]:
            if data["id"] == node_id:
                if data["status"] == "finished":
                    raise RuntimeError(f"node {node_id!r} is finished; it is never rewritten")
                data.update(_json_ready(changes))
                self._write()
                _atomic_write_json(self.root / data["paths"]["dir"] / "turn.json", data)
                return
        raise ValueError(f"turn_id must name a node of this workspace, got {node_id!r}")

    def _require_finished(self, turn_id: str) -> None:
        record = self.turn(turn_id)
        if record.status != "finished":
            raise ValueError(f"turn {turn_id!r} is {record.status}, not finished")

    def _next_turn_id(self) -> str:
        """A fresh id; never one used before, even by a discarded node (kept in the index)."""
        numbers = [int(d["id"].split("-")[1]) for d in self._data["turns"] if d["id"] != BASE_ID]
        used = {int(p.name.split("-")[1]) for p in (self.root / "turns").glob("turn-*")}
        number = max([self._data.get("last_turn_number", 0), *numbers, *used]) + 1
        self._data["last_turn_number"] = number
        return f"turn-{number:04d}"

    def _write(self) -> None:
        _atomic_write_json(self.root / WORKSPACE_FILE, self._data)


def _turn_timings(turn_dir: Path) -> dict[str, float]:
    """Per-phase seconds a turn recorded with its latest checkpoint (none if none yet)."""
    path = turn_dir / STATE_NAME
    if not path.is_file():
        return {}
    phases = json.loads(path.read_text()).get("timings", {})
    return {f"{phase}_s": float(seconds) for phase, seconds in phases.items()}


def load_editor_for(spec: str, device: str) -> Editor:
    """The editor named by `spec` (see `edit3d.editing.editors.load_editor`) on `device`."""
    from edit3d.editing.editors import load_editor

    if ":" in spec:  # a user's factory takes only the arguments it declares
        return load_editor(spec)
    return load_editor(spec, device=device)


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process that marked a node running still exists (same host only)."""
    if not owner or owner.get("host") != socket.gethostname():
        return False
    pid = int(owner.get("pid", 0))
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _json_ready(data: dict[str, Any]) -> dict[str, Any]:
    """The data as it reads back from JSON (tuples become lists), so memory matches disk."""
    return json.loads(json.dumps(data))


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: no stray temp file stays behind
        raise
