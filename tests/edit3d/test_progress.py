"""One bar per job: phase events turned into an overall fraction and ETA (JobProgress)."""

from __future__ import annotations

import io
import re

import pytest

from edit3d.editing.commands import ProgressBar
from edit3d.progress import JobProgress, PhasePlan, ProgressEvent


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


PLAN = [PhasePlan("prerender", 4), PhasePlan("masks", 4, 3.0), PhasePlan("turn", 20, 0.5)]
"""Weights 4 + 12 + 10 = 26 cost units."""


def run_phases(
    plan: list[PhasePlan], seconds_per_step: dict[str, float], skip: tuple[str, ...] = ()
) -> list[ProgressEvent]:
    clock, seen = FakeClock(), []
    job = JobProgress(plan, seen.append, clock=clock)
    for phase in plan:
        if phase.name in skip:
            continue
        for step in range(1, phase.steps + 1):
            clock.now += seconds_per_step[phase.name]
            loss = 0.1 if phase.name == "turn" else None
            job(ProgressEvent(phase.name, step, phase.steps, loss=loss))
    return seen


def test_fraction_spans_the_phases_by_planned_cost_and_never_restarts() -> None:
    events = run_phases(PLAN, {"prerender": 1.0, "masks": 3.0, "turn": 0.5})
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions)
    assert fractions[3] == pytest.approx(4 / 26)  # pre-render done
    assert fractions[7] == pytest.approx(16 / 26)  # masks done
    assert fractions[0] == pytest.approx(1 / 26) and fractions[-1] == 1.0
    assert [e.phase for e in events] == ["prerender"] * 4 + ["masks"] * 4 + ["turn"] * 20


def test_eta_covers_the_whole_job_from_measured_costs() -> None:
    # Costs exactly as planned (1 s per cost unit): the ETA is exact from the first step.
    events = run_phases(PLAN, {"prerender": 1.0, "masks": 3.0, "turn": 0.5})
    assert all(event.eta_s is not None for event in events)
    assert events[0].eta_s == pytest.approx(25.0)
    assert events[4].eta_s == pytest.approx(9.0 + 10.0)  # 3 mask views at 3 s + training
    assert events[-1].eta_s == pytest.approx(0.0)


def test_eta_of_later_phases_scales_with_what_was_measured() -> None:
    # Everything twice as slow as planned; masks measured at 10 s per view.
    events = run_phases(PLAN, {"prerender": 2.0, "masks": 10.0, "turn": 1.0})
    assert events[1].eta_s == pytest.approx(2 * 2.0 + (12 + 10) * 2.0)
    # After pre-render (8 s / 4 units) and one mask (10 s / 3 units): 18 s / 7 units.
    assert events[4].eta_s == pytest.approx(3 * 10.0 + 10 * 18 / 7)
    assert events[8].eta_s == pytest.approx(19 * 1.0)  # the training's own rate


def test_a_phase_loaded_from_disk_counts_as_done() -> None:
    events = run_phases(PLAN, {"prerender": 1.0, "masks": 3.0, "turn": 0.5}, skip=("prerender",))
    assert events[0].phase == "masks"
    assert events[0].fraction == pytest.approx((4 + 3) / 26)
    assert events[-1].fraction == 1.0
    assert all(event.eta_s is not None for event in events)


def test_unplanned_phase_keeps_the_bar_and_plans_are_checked() -> None:
    seen: list[ProgressEvent] = []
    job = JobProgress([PhasePlan("a", 2), PhasePlan("b", 2)], seen.append)
    job(ProgressEvent("a", 2, 2))
    job(ProgressEvent("other", 1, 10))
    assert seen[1].fraction == seen[0].fraction == pytest.approx(0.5)
    with pytest.raises(ValueError, match="distinct"):
        JobProgress([PhasePlan("a", 1), PhasePlan("a", 1)], seen.append)
    with pytest.raises(ValueError, match="step_cost"):
        PhasePlan("a", 1, 0.0)


def test_single_phase_event_is_its_own_fraction() -> None:
    assert ProgressEvent("export", 3, 4).job_fraction == 0.75
    assert ProgressEvent("export", 3, 0).job_fraction == 0.0
    assert ProgressEvent("turn", 1, 4, fraction=0.9).job_fraction == 0.9


def test_cli_draws_one_bar_that_never_restarts() -> None:
    out = io.StringIO()
    with ProgressBar(out) as bar:
        job = JobProgress(PLAN, bar)
        for phase in PLAN:
            for step in range(1, phase.steps + 1):
                loss = 0.25 if phase.name == "turn" else None
                job(ProgressEvent(phase.name, step, phase.steps, loss=loss))
    frames = [frame for frame in re.split(r"[\r\n]", out.getvalue()) if "%|" in frame]
    percents = [int(frame.split("%")[0]) for frame in frames]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any("prerender 2/4" in f for f in frames) and any("masks 1/4" in f for f in frames)
    assert all("eta=" in f for f in frames[1:])
    assert "loss=0.2500" in frames[-1]
    assert not any("loss" in f for f in frames if "masks" in f)
