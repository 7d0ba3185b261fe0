"""A turn's editors on Ray actors: more GPUs, or more machines, edit while the field trains.

`RayEditorPool` is an `EditDispatcher` (see `edit3d.editing.dispatch`): N actors, each
loading the editor once on its own device (one GPU each when the cluster has GPUs, else a
CPU), receive `EditJob`s (render, condition, fusion base, mask, seed) and return fused
targets. Faults: a job whose actor dies (killed worker, out of memory, lost node) is queued
again for another actor, or run in this process once no actor is left, so a turn neither
hangs nor loses a target. Cancel stops the jobs in flight within one denoising step.

Ray is an optional dependency (`pip install edit3d[ray]`), imported only here and only
when a pool is made. Every worker needs the same environment and the editor's weights in its
model cache (docs/cluster.md).
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from edit3d.editing.dispatch import EditDone, EditJob, run_job
from edit3d.editing.editors import Editor
from edit3d.progress import Cancelled, CancelToken

READY_TIMEOUT_S = 900.0
"""How long actors may take to be placed and load their editor before the pool gives up."""

POLL_S = 0.05
"""How often a waiting turn looks at its cancel token."""


def require_ray() -> Any:
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "the editor pool needs Ray: pip install 'edit3d[ray]' (or pip install 'ray>=2.40')"
        ) from error
    return ray


def start_local_ray(num_cpus: int, *, num_gpus: int | None = None, attempts: int = 3) -> None:
    """Start a Ray instance on this machine for this process (no dashboard).

    Tried `attempts` times: Ray's node manager aborts when its agent process takes more than
    15 s to start, which a busy machine reaches on a cold start (Ray 2.60); the next try
    finds the agent's modules in the page cache.
    """
    ray = require_ray()
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
            )
            return
        except Exception:
            ray.shutdown()
            if attempt == attempts:
                raise


def join_ray(address: str) -> None:
    """Join a running Ray cluster (`ray://host:port` through Ray Client, or `host:port`)."""
    require_ray().init(address=address, log_to_driver=False)


def open_editor_pool(
    editor_spec: str,
    *,
    editors: int | None = None,
    address: str | None = None,
    staleness: int | None = None,
    device: str = "cpu",
) -> RayEditorPool:
    """Join `address` or start Ray on this machine (unless this process already has), then
    a pool of `editors` actors (None: one per GPU Ray sees), each on a GPU of its own when
    the cluster has GPUs, else on a CPU. `device` is where this process edits once every
    actor is gone."""
    ray = require_ray()
    if not ray.is_initialized() and address:
        join_ray(address)
    elif not ray.is_initialized():
        import torch

        gpus = torch.cuda.device_count()
        if not editors and not gpus:
            raise ValueError("editors: no GPU is visible here; give a number of CPU editors")
        start_local_ray(num_cpus=max(os.cpu_count() or 1, editors or 1), num_gpus=gpus)
    cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
    count = editors or cluster_gpus
    if count < 1:
        raise ValueError("editors: the Ray cluster has no GPU; give a number of CPU editors")
    settings = PoolSettings(count, use_gpu=cluster_gpus > 0, staleness=staleness)
    return RayEditorPool(
        editor_spec, settings, local_editor=lambda: load_pool_editor(editor_spec, device, {})
    )


@contextmanager
def editor_pool(editor_spec: str, **where: Any) -> Iterator[RayEditorPool]:
    """`open_editor_pool` for the length of a command: the actors stop on exit, and Ray too
    when this call started or joined it."""
    ray = require_ray()
    ours = not ray.is_initialized()
    try:
        pool = open_editor_pool(editor_spec, **where)
        try:
            yield pool
        finally:
            pool.shutdown()
    finally:
        if ours:
            ray.shutdown()


class _EditorWorker:
    """What runs inside one actor: the editor, loaded once, and the jobs' cancel flags."""

    def __init__(self, editor_spec: str, editor_options: dict[str, Any], use_gpu: bool) -> None:
        self.device = "cuda" if use_gpu else "cpu"
        self.editor = load_pool_editor(editor_spec, self.device, editor_options)
        self.cancelled: set[int] = set()

    def describe(self) -> dict[str, Any]:
        device = self.device
        if device == "cuda":
            import torch

            device = f"cuda ({torch.cuda.get_device_name(0)})"
        return {"device": device, "host": socket.gethostname(), "pid": os.getpid()}

    def edit(self, job: EditJob, ticket: int) -> Any:
        token = CancelToken(lambda: ticket in self.cancelled)
        return run_job(self.editor, job, token)

    def cancel(self, tickets: list[int]) -> None:
        """Stop the edits handed out under `tickets` (one per submission: a job submitted
        again after a cancel, e.g. by a resumed turn, runs)."""
        self.cancelled.update(tickets)


@dataclass
class _Slot:
    """One actor as the pool sees it."""

    actor: Any
    name: str
    device: str = "?"
    alive: bool = True
    job: EditJob | None = None
    ticket: int = 0
    started: float = 0.0
    edits: int = 0
    seconds: float = 0.0
    pid: int = 0

    def stats(self) -> dict[str, Any]:
        per_edit = round(self.seconds / self.edits, 3) if self.edits else None
        return {
            "editor": self.name,
            "device": self.device,
            "edits": self.edits,
            "s_per_edit": per_edit,
            "alive": self.alive,
            "busy": self.job is not None,
            "pid": self.pid,
        }


@dataclass
class PoolSettings:
    """How many editors, where, and how far behind the field their edits may be."""

    editors: int
    """Actors (≥ 1); each takes one GPU when `use_gpu`, else one CPU."""
    use_gpu: bool = False
    """Give every actor a GPU of its own (its editor runs on "cuda")."""
    staleness: int | None = None
    """Edit rounds that may stay in flight while the field trains (None: `editors`);
    0 makes the pool wait for each edit as a turn without a pool does."""
    editor_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the editor factory (besides the device)."""

    def __post_init__(self) -> None:
        if self.editors < 1:
            raise ValueError(f"editors must be ≥ 1, got {self.editors}")
        if self.staleness is not None and self.staleness < 0:
            raise ValueError(f"staleness must be ≥ 0 or None, got {self.staleness}")


class RayEditorPool:
    """An `EditDispatcher` on Ray actors; see the module docstring."""

    def __init__(
        self,
        editor_spec: str,
        settings: PoolSettings,
        *,
        local_editor: Callable[[], Editor] | None = None,
    ) -> None:
        """Start `settings.editors` actors of `editor_spec` and wait until each has loaded
        it. `local_editor()` builds the editor for this process, used only once every actor
        is gone (default: `editor_spec` on the CPU)."""
        self.ray = require_ray()
        if not self.ray.is_initialized():
            raise RuntimeError("Ray is not running: call start_local_ray() or join_ray() first")
        self.editor_spec = editor_spec
        self.settings = settings
        self.requeued = 0
        """Jobs sent again after their actor died."""
        self._local_factory = local_editor or _cpu_editor(editor_spec, settings.editor_options)
        self._local: Editor | None = None
        self._queue: deque[EditJob] = deque()
        self._running: dict[Any, _Slot] = {}
        self._tickets = 0
        self._slots = self._start_actors()

    @property
    def staleness(self) -> int:
        chosen = self.settings.staleness
        return self.settings.editors if chosen is None else chosen

    # --- EditDispatcher -----------------------------------------------------------------

    def submit(self, job: EditJob) -> None:
        if job.spec.editor != self.editor_spec:
            raise ValueError(
                f"the editor pool runs {self.editor_spec!r}; the turn asks for {job.spec.editor!r}"
            )
        self._queue.append(job)
        self._dispatch()

    def collect(self, *, wait: bool, cancel: CancelToken | None = None) -> list[EditDone]:
        done: list[EditDone] = []
        while True:
            if cancel is not None and cancel.cancelled:
                self.cancel_pending()
                raise Cancelled("operation cancelled")
            self._dispatch()
            if not self._running and self._queue:
                done.append(self._run_locally(self._queue.popleft(), cancel))
            if self._running:
                done.extend(self._finished(POLL_S if wait and not done else 0.0))
            if done or not wait or not (self._running or self._queue):
                return done

    def cancel_pending(self) -> None:
        self._queue.clear()
        running = list(self._running.items())
        for _ref, slot in running:
            if slot.job is not None:
                slot.actor.cancel.remote([slot.ticket])
        # Wait for the stopped edits (one denoising step each) so the actors are free.
        if running:
            self.ray.wait([ref for ref, _ in running], num_returns=len(running), timeout=60)
        for ref, slot in running:
            slot.job = None
            self._running.pop(ref, None)

    def stats(self) -> list[dict[str, Any]]:
        return [slot.stats() for slot in self._slots]

    # --- the actors -------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the pending jobs and the actors."""
        self.cancel_pending()
        for slot in self._slots:
            if slot.alive:
                self.ray.kill(slot.actor)
                slot.alive = False

    def _start_actors(self) -> list[_Slot]:
        options: dict[str, Any] = {"max_concurrency": 2}  # a cancel runs beside an edit
        options |= {"num_gpus": 1, "num_cpus": 1} if self.settings.use_gpu else {"num_cpus": 1}
        remote = self.ray.remote(**options)(_EditorWorker)
        spec, settings = self.editor_spec, self.settings
        slots = [
            _Slot(remote.remote(spec, settings.editor_options, settings.use_gpu), f"editor-{i}")
            for i in range(settings.editors)
        ]
        refs = [slot.actor.describe.remote() for slot in slots]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=READY_TIMEOUT_S)
        if len(ready) < len(refs):
            for slot in slots:
                self.ray.kill(slot.actor)
            raise RuntimeError(
                f"{len(refs) - len(ready)} of {len(refs)} editor actors were not ready within "
                f"{READY_TIMEOUT_S:.0f} s; the cluster has {self.ray.cluster_resources()} "
                f"(each actor needs {options})"
            )
        try:
            described = self.ray.get(refs)
        except self.ray.exceptions.RayError as error:
            for slot in slots:
                self.ray.kill(slot.actor)
            raise RuntimeError(
                f"the editor actors could not load {self.editor_spec!r}: {error}"
            ) from error
        for slot, info in zip(slots, described, strict=True):
            slot.device = f"{info['device']} on {info['host']}"
            slot.pid = int(info["pid"])
        return slots

    def _dispatch(self) -> None:
        """Queued jobs to idle actors, the one with the fewest edits first (spreads the work
        even when each edit ends before the next one is asked for)."""
        idle = sorted((s for s in self._slots if s.alive and s.job is None), key=_edits_done)
        for slot in idle:
            if not self._queue:
                return
            job = self._queue.popleft()
            self._tickets += 1
            slot.job, slot.ticket, slot.started = job, self._tickets, time.monotonic()
            self._running[slot.actor.edit.remote(job, slot.ticket)] = slot

    def _finished(self, timeout: float) -> list[EditDone]:
        refs = list(self._running)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        done = []
        for ref in ready:
            slot = self._running.pop(ref)
            job, slot.job = slot.job, None
            assert job is not None
            try:
                after = self.ray.get(ref)
            except Exception as error:
                self._on_failure(slot, job, error)
                continue
            slot.edits += 1
            slot.seconds += time.monotonic() - slot.started
            done.append(EditDone(job, after))
        return done

    def _on_failure(self, slot: _Slot, job: EditJob, error: Exception) -> None:
        """A lost actor's job goes back to the front of the queue; an editor's own error
        (bad input, a cancelled edit) is the turn's."""
        exceptions = self.ray.exceptions
        lost = (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.ObjectLostError)
        if isinstance(error, lost) or _is_out_of_memory(error):
            slot.alive = False
            self.ray.kill(slot.actor)
            self.requeued += 1
            self._queue.appendleft(job)
            return
        if isinstance(error, exceptions.RayTaskError):
            raise error.as_instanceof_cause() from None
        raise error

    def _run_locally(self, job: EditJob, cancel: CancelToken | None) -> EditDone:
        if self._local is None:
            self._local = self._local_factory()
        return EditDone(job, run_job(self._local, job, cancel))


def load_pool_editor(editor_spec: str, device: str, options: dict[str, Any]) -> Editor:
    """The editor `editor_spec` names on `device` (a factory's own options besides)."""
    from edit3d.editing.editors import load_editor

    if ":" in editor_spec:  # a user's factory takes only the arguments it declares
        return load_editor(editor_spec, **options)
    return load_editor(editor_spec, device=device, **options)


def _cpu_editor(editor_spec: str, options: dict[str, Any]) -> Any:
    return lambda: load_pool_editor(editor_spec, "cpu", options)


def _edits_done(slot: _Slot) -> int:
    return slot.edits


def _is_out_of_memory(error: Exception) -> bool:
    cause = getattr(error, "cause", None)
    return type(cause).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(cause or "")
