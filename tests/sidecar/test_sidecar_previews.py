"""Live preview frames through a real sidecar (tiny profile, sample scene, few steps): a
training job with previews every k iterations sends frames at multiples of k, from the
camera the client asked for, showing the field as it is at that step; and a turn's queries
and caption in the session's turn list."""

from __future__ import annotations

import numpy as np
import pytest
from sidecar_harness import of_type, start_sidecar, wait_for_events

from edit3d.field.testing import make_tiny_scene
from edit3d.scene.cameras import CameraView, Intrinsics
from protocol import messages as m


def finished(client, job_id: str, timeout: float = 180.0):
    seen = wait_for_events(client, lambda e: e.header.type in (
        "job.finished", "job.failed", "job.cancelled") and e.message.job_id == job_id,
        timeout=timeout)
    end = seen[-1]
    assert end.header.type == "job.finished", getattr(end.message, "traceback", end.message)
    return seen, end.message


def preview_camera(summary, index: int) -> m.Camera:
    """A dataset view's pose with a 40×30 px image (another size and aspect than the data)."""
    fx, fy, cx, cy, width, height = summary.view_intrinsics[index]
    sx, sy = 40 / width, 30 / height
    return m.Camera(c2w=np.array(summary.view_c2w[index]), fx=fx * sx, fy=fy * sy, cx=cx * sx,
                    cy=cy * sy, width=40, height=30, name="preview-camera")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_tiny_scene(tmp_path_factory.mktemp("scene") / "scene", num_views=8,
                             resolution=32)


def test_training_jobs_send_live_frames_of_the_field_being_trained(tmp_path, scene) -> None:
    work = tmp_path / "work"
    sidecar = start_sidecar(work, "--data-root", str(scene.root), preload=True)
    client = sidecar.client()
    created = client.request(m.SessionCreate(name="previews", dataset_path=str(scene.root),
                                             preset="tiny"))
    sid = created.session_id
    client.follow(sid, created.last_seq)
    wait_for_events(client, lambda e: e.header.type == "job.finished")  # session.prepare
    summary = client.request(m.SessionOpen(session_id=sid))
    camera = preview_camera(summary, 2)

    base = client.request(m.JobTrainBase(session_id=sid, steps=12, preview_every=4,
                                         preview_interval_s=0.0, preview_camera=camera))
    seen, done = finished(client, base.job_id)
    frames = of_type(seen, "job.preview", base.job_id)
    live = [f for f in frames if f.view_name == "preview-camera"]
    assert [f.step for f in live] == [4, 8, 12]
    assert done.result["preview_frames"] == 3
    for frame in live:
        assert frame.image.dtype == np.uint8 and frame.image.shape == (30, 40, 3)
    result_frame = frames[-1]  # then the usual look at the result, first dataset view
    assert result_frame.view_name == summary.view_names[0] and result_frame.step == 12

    from edit3d.workspace import Workspace

    workspace = Workspace.open(work / "sessions" / sid / "workspace")
    view = CameraView("preview-camera", camera.c2w, Intrinsics(
        camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height))
    direct = workspace.render(view, "base").rgb
    # the step-12 frame is the trained base, seen from the asked camera (up to 8-bit rounding)
    np.testing.assert_allclose(live[-1].image / 255.0, direct, atol=1 / 255 + 1e-4)
    change = np.abs(live[0].image.astype(float) - live[-1].image.astype(float)).mean()
    assert change > 1.0  # the frames follow the training

    turn = client.request(m.JobRunTurn(session_id=sid, instruction="paint it red", steps=4,
                                       preview_every=2, preview_interval_s=0.0))
    seen, done = finished(client, turn.job_id)
    frames = of_type(seen, "job.preview", turn.job_id)
    assert [f.step for f in frames] == [2, 4, 4]  # live frames, then the result's frame
    assert {f.view_name for f in frames} == {summary.view_names[0]}  # default camera
    assert frames[0].image.shape == (32, 32, 3)
    # the last live frame and the result's frame: the same field state, the same view
    np.testing.assert_allclose(frames[1].image.astype(int), frames[2].image, atol=1)

    settings = m.EditorSettings(guidance_scale=6.0, diffusion_steps=2)
    quiet = client.request(m.JobRunTurn(session_id=sid, instruction="paint it blue", steps=2,
                                        preview_every=0, edit_queries=("shirt", "trousers"),
                                        keep_queries=("face",), caption="a person",
                                        editor_settings=settings))
    seen, _ = finished(client, quiet.job_id)
    assert [f.step for f in of_type(seen, "job.preview", quiet.job_id)] == [2]  # result only
    # one bar for the whole turn: pre-render → masks → training, never restarting, with ETA
    bar = of_type(seen, "job.progress", quiet.job_id)
    phases = [p.phase for p in bar]
    assert sorted(set(phases), key=phases.index) == ["prerender", "masks", "turn"]
    assert phases == sorted(phases, key=["prerender", "masks", "turn"].index)
    fractions = [p.fraction for p in bar]
    assert fractions == sorted(fractions) and fractions[0] > 0.0 and fractions[-1] == 1.0
    assert all(p.eta_s is not None for p in bar)
    assert {p.loss is None for p in bar if p.phase != "turn"} == {True}

    # the turn list shows a turn's queries (as lists) and caption
    turns = {t.turn_id: t for t in client.request(m.SessionOpen(session_id=sid)).turns}
    turn = turns["turn-0002"]
    assert turn.edit_queries == ("shirt", "trousers") and turn.keep_queries == ("face",)
    assert turn.params["caption"] == "a person" and turn.params["edit_rate"] == 10
    assert turns["turn-0001"].edit_queries == ()  # none given
    # what made the masks: ADSS on random networks here, and the history says so
    assert turn.params["segmentation"] == "adss-tiny"
    assert turns["turn-0001"].params["segmentation"] == ""
    params = turn.params
    # the editor settings the client set, the method's defaults for the others
    assert params["guidance_scale"] == 6.0 and params["diffusion_steps"] == 2
    assert params["image_guidance_scale"] == turns["turn-0001"].params["image_guidance_scale"]
    assert turns["turn-0001"].params["guidance_scale"] != 6.0

    # job.preview_edit: the head's render at the asked camera and one fused edit per seed
    ask = client.request(m.JobPreviewEdit(session_id=sid, camera=camera, seed=3, seeds=2,
                                          instruction="paint it red",
                                          editor_settings=m.EditorSettings(diffusion_steps=2)))
    seen, done = finished(client, ask.job_id)
    result = of_type(seen, "edit_preview.result", ask.job_id)[0]
    assert result.seeds == (3, 4) and result.view_name == "preview-camera"
    assert result.before.shape == (30, 40, 3) and result.after.shape == (2, 30, 40, 3)
    reopened = Workspace.open(work / "sessions" / sid / "workspace")
    head = reopened.render(view, "turn-0002").rgb
    np.testing.assert_allclose(result.before / 255.0, head, atol=1 / 255 + 1e-4)
    np.testing.assert_array_equal(result.mask, 1.0)  # no queries: the whole view
    assert np.abs(result.after[0].astype(int) - result.after[1]).mean() > 0.5  # seeds differ
    assert np.abs(result.after[0].astype(int) - result.before).mean() > 0.5
    progress = of_type(seen, "job.progress", ask.job_id)
    assert progress[-1].step == progress[-1].total == 4  # 2 seeds × 2 denoising steps
    assert [p.step for p in progress] == sorted(p.step for p in progress)
    assert done.result["seeds"] == 2 and done.result["tiny_profile"] is True
    assert client.request(m.Heartbeat()).gpu_memory_free is None  # a CPU sidecar
    client.close()
    assert sidecar.terminate() == 0
