"""Time per phase from a workspace's history, printed like the paper's Tab. 2.

Every history node (base training, each editing turn, the super-resolution fine-tune)
records when it started and finished; this module reads those records only, so it works
on any workspace, finished or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PAPER_TAB2_MINUTES: dict[str, float] = {
    "base": 3.48,
    "edit (in2n)": 44.16,
    "edit (edit3d)": 44.62,
    "refine": 4.45,
}
"""Edit3D Tab. 2: minutes per 10k iterations at 497x369 on an RTX 3090."""


@dataclass(frozen=True)
class PhaseTiming:
    """Wall time of one history node."""

    turn_id: str
    """The node's id."""
    phase: str
    """"base", "edit (edit3d)", "edit (in2n)" or "refine"."""
    status: str
    """The node's status (a running node's time is the time so far)."""
    seconds: float | None
    """Wall time from start to finish (None when not recorded)."""
    steps: int | None
    """Training iterations the node ran or was set to run."""

    @property
    def minutes_per_10k(self) -> float | None:
        """Minutes scaled to 10k iterations, the unit of the paper's Tab. 2."""
        if self.seconds is None or not self.steps:
            return None
        return self.seconds / 60.0 * 10_000 / self.steps


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _phase(record: Any) -> str:
    kind = str(_get(record, "kind", "edit"))
    if kind != "edit":
        return kind
    mode = _get(_get(record, "spec", None) or {}, "mode", "edit3d")
    return f"edit ({mode})"


def _seconds(record: Any, timings: Mapping[str, Any]) -> float | None:
    """The node's recorded total, else its start-to-finish wall time."""
    for key in ("total_s", "seconds", "wall_s"):
        if timings.get(key) is not None:
            return float(timings[key])
    start, end = _get(record, "created"), _get(record, "finished")
    if not start or end is None:
        return None
    return max(float(end) - float(start), 0.0)


def _steps(record: Any) -> int | None:
    """Iterations of this node alone: a finished node's planned count (its record's count
    is the field's running total, which includes its ancestors'), else the record's."""
    planned = _get(_get(record, "spec", None) or {}, "steps")
    if planned is not None and _get(record, "status") == "finished":
        return int(planned)
    done = _get(record, "steps")
    if isinstance(done, (int, float)) and done > 0:
        return int(done)
    return None if planned is None else int(planned)


def phase_timings(records: Iterable[Any]) -> list[PhaseTiming]:
    """One `PhaseTiming` per history record (`edit3d.workspace.TurnRecord` or such dicts)."""
    result = []
    for record in records:
        timings = _get(record, "timings", None) or {}
        result.append(
            PhaseTiming(
                turn_id=str(_get(record, "id")),
                phase=_phase(record),
                status=str(_get(record, "status", "")),
                seconds=_seconds(record, timings),
                steps=_steps(record),
            )
        )
    return result


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def format_timings_table(timings: list[PhaseTiming], *, hardware: str = "") -> str:
    """A Tab. 2-style table: minutes, iterations, minutes per 10k, and the paper's figure."""
    header = f"{'node':<14} {'phase':<14} {'status':<11} {'minutes':>8} {'iters':>7} "
    header += f"{'min/10k':>8} {'paper min/10k (3090)':>21}"
    lines = [f"Time per phase{f' on {hardware}' if hardware else ''}", header, "-" * len(header)]
    for t in timings:
        paper = PAPER_TAB2_MINUTES.get(t.phase)
        minutes = None if t.seconds is None else t.seconds / 60.0
        lines.append(
            f"{t.turn_id:<14.14} {t.phase:<14} {t.status:<11} {_fmt(minutes):>8} "
            f"{_fmt(t.steps, '{:d}'):>7} {_fmt(t.minutes_per_10k):>8} {_fmt(paper):>21}"
        )
    return "\n".join(lines)


def format_phase_split(records: Iterable[Any]) -> str:
    """Where each node's time went, from its recorded `<phase>_s` timings (load, prerender,
    masks, edit, train, upscale, preview, ...), largest first."""
    lines = ["Seconds per step of each node"]
    for record in records:
        timings = _get(record, "timings", None) or {}
        parts = sorted(
            ((key.removesuffix("_s"), float(value)) for key, value in timings.items()
             if key.endswith("_s") and key != "total_s" and isinstance(value, (int, float))),
            key=lambda item: -item[1],
        )  # fmt: skip
        split = "  ".join(f"{name} {seconds:.1f}" for name, seconds in parts) or "-"
        lines.append(f"{_get(record, 'id')!s:<14.14} {split}")
    return "\n".join(lines)
