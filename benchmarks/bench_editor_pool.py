"""Wall time of one editing turn with its edits on 1 vs 2 Ray actors (and in this process).

A slow stand-in editor (`edit3d.editing.testing.PacedEditor`: a fixed wait per edit that
uses no CPU, as an editor on a GPU of its own) edits a tiny field's views every `edit_rate`
iterations. Three runs from the same trained base on one local Ray instance, in one process,
one after another: edits in this process (the synchronous turn), a pool of one actor and a
pool of two (staleness: one round per actor). The printed ratio is pool(1) / pool(2) wall
time; with the editor the bound it approaches 2, with the field's steps the bound it
approaches 1.

    python benchmarks/bench_editor_pool.py [--steps 40] [--edit-rate 2] [--seconds 0.6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edit3d.editing.dispatch import EditDispatcher, LocalDispatcher
from edit3d.editing.ray_pool import PoolSettings, RayEditorPool, start_local_ray
from edit3d.editing.testing import PacedEditor
from edit3d.editing.turns import TurnSpec, run_turn
from edit3d.field import field_from_checkpoint
from edit3d.field.testing import cached_tiny_base

PACED = "edit3d.editing.testing:PacedEditor"


def timed_turn(base: Path, spec: TurnSpec, folder: Path, dispatcher: EditDispatcher) -> float:
    field = field_from_checkpoint(base)
    started = time.perf_counter()
    result = run_turn(field, spec, folder, None, dispatcher=dispatcher)
    seconds = time.perf_counter() - started
    assert result.edits == spec.steps // spec.edit_rate, result.edits  # type: ignore[operator]
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="iterations of the turn")
    parser.add_argument("--edit-rate", type=int, default=2, help="iterations between edits")
    parser.add_argument("--seconds", type=float, default=0.6, help="seconds per edit")
    args = parser.parse_args(argv)
    options = {"seconds": args.seconds, "inner": None}
    spec = TurnSpec("make it blue", steps=args.steps, edit_rate=args.edit_rate, editor=PACED)
    with tempfile.TemporaryDirectory() as tmp:
        _, base = cached_tiny_base(Path(tmp) / "base", steps=30, num_views=6, resolution=24)
        start_local_ray(num_cpus=2)
        walls = {"in process": timed_turn(base, spec, Path(tmp) / "sync",
                                          LocalDispatcher(PacedEditor(**options)))}  # fmt: skip
        for actors in (1, 2):
            pool = RayEditorPool(PACED, PoolSettings(actors, editor_options=options))
            try:
                walls[f"{actors} actor(s)"] = timed_turn(base, spec, Path(tmp) / str(actors), pool)
                per_edit = [s["s_per_edit"] for s in pool.stats()]
            finally:
                pool.shutdown()
            print(f"  {actors} actor(s): seconds per edit {per_edit}")
    edits = args.steps // args.edit_rate
    print(
        f"turn of {args.steps} iterations, {edits} edits of {args.seconds} s "
        f"(stand-in editor), tiny field on the CPU:"
    )
    for name, seconds in walls.items():
        print(f"  {name:>12}: {seconds:6.2f} s")
    print(f"ratio 1 actor / 2 actors: {walls['1 actor(s)'] / walls['2 actor(s)']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
