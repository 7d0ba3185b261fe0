"""The real edit3d Workspace behind a real sidecar (tiny profile, sample scene, few steps):
views, base training, world-frame render, a turn killed with kill -9 and resumed after a
restart, cancel + discard, checkout, and a dataset uploaded by a remote client."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from sidecar_harness import of_type, start_sidecar, wait_for_events

from edit3d.field.ns_config import read_trainer_config
from edit3d.scene.sample import make_sample_scene
from protocol import messages as m


def finished(client, job_id: str, timeout: float = 180.0):
    seen = wait_for_events(client, lambda e: e.header.type in (
        "job.finished", "job.failed", "job.cancelled") and e.message.job_id == job_id,
        timeout=timeout)
    end = [e for e in seen if e.header.type in ("job.finished", "job.failed", "job.cancelled")
           and e.message.job_id == job_id][-1]
    assert end.header.type == "job.finished", getattr(end.message, "traceback", end.message)
    return seen, end.message


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def camera_of(summary, index: int) -> m.Camera:
    fx, fy, cx, cy, width, height = summary.view_intrinsics[index]
    return m.Camera(c2w=np.array(summary.view_c2w[index]), fx=fx, fy=fy, cx=cx, cy=cy,
                    width=int(width), height=int(height), name=summary.view_names[index])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_sample_scene(tmp_path_factory.mktemp("scene") / "scene", num_views=24,
                             resolution=32)


def test_turn_killed_mid_way_is_interrupted_then_resumed(tmp_path, scene) -> None:
    work = tmp_path / "work"
    first = start_sidecar(work, "--data-root", str(scene.root), preload=True)
    client = first.client()
    created = client.request(m.SessionCreate(name="sample", dataset_path=str(scene.root),
                                             preset="tiny"))
    sid = created.session_id
    client.follow(sid, created.last_seq)
    prepare = wait_for_events(client, lambda e: e.header.type == "job.finished")
    assert of_type(prepare, "job.finished")[0].kind == "session.prepare"
    summary = client.request(m.SessionOpen(session_id=sid))
    assert len(summary.view_names) == 24
    by_name = {view.name: view for view in scene.views}
    for name, c2w in zip(summary.view_names, summary.view_c2w, strict=True):
        np.testing.assert_allclose(c2w, by_name[name].c2w, atol=1e-12)  # world frame, as given

    base_job = client.request(m.JobTrainBase(session_id=sid, steps=20))
    seen, done = finished(client, base_job.job_id)
    assert done.turn_id == "base"
    steps = [p.step for p in of_type(seen, "job.progress", base_job.job_id)]
    assert steps[-1] == 20 and steps == sorted(steps)
    frame = of_type(seen, "job.preview", base_job.job_id)[-1]  # a look at the result
    assert frame.image.dtype == np.uint8 and frame.image.shape == (32, 32, 3)
    assert frame.view_name == summary.view_names[0]

    camera = camera_of(summary, 3)
    render_job = client.request(m.JobRender(session_id=sid, camera=camera,
                                            outputs=("rgb", "depth")))
    seen, _ = finished(client, render_job.job_id)
    rendered = of_type(seen, "render.result", render_job.job_id)[0]
    assert rendered.rgb.shape == (32, 32, 3) and rendered.depth.shape == (32, 32)

    workspace = work / "sessions" / sid / "workspace"
    from edit3d.workspace import Workspace

    direct = Workspace.open(workspace).render(by_name[summary.view_names[3]])
    np.testing.assert_allclose(rendered.rgb, direct.rgb, atol=1e-5)  # same view, same pixels
    small_job = client.request(m.JobRender(session_id=sid, camera=camera, dtype="uint8",
                                           outputs=("rgb", "depth")))
    seen, _ = finished(client, small_job.job_id)
    small = of_type(seen, "render.result", small_job.job_id)[0]
    assert small.rgb.dtype == np.uint8 and small.depth.dtype == np.float16
    np.testing.assert_allclose(small.rgb, direct.rgb * 255.0, atol=0.51)

    base_checkpoint = workspace / "base" / "checkpoint.pt"
    base_digest = digest(base_checkpoint)
    turn_job = client.request(m.JobRunTurn(session_id=sid, instruction="paint it red",
                                           steps=60, seed=1))
    turn_checkpoint = workspace / "turns" / "turn-0001" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not turn_checkpoint.exists():  # the periodic checkpoint (every 50 steps here)
        assert time.monotonic() < deadline and first.process.poll() is None
        client.poll(timeout_ms=100)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    client.close()

    second = start_sidecar(work, "--data-root", str(scene.root), preload=True)
    client = second.client()
    summary = client.request(m.SessionOpen(session_id=sid))
    turns = {turn.turn_id: turn for turn in summary.turns}
    assert turns["base"].status == "finished"
    assert turns["turn-0001"].status == "interrupted"
    assert turns["turn-0001"].instruction == "paint it red"
    assert digest(base_checkpoint) == base_digest  # a finished node is never rewritten
    history = {job["id"]: job for job in
               __import__("json").loads((work / "sessions" / sid / "session.json")
                                        .read_text())["jobs"]}
    assert history[turn_job.job_id]["state"] == "failed"

    resume = client.request(m.JobResumeTurn(session_id=sid, turn_id="turn-0001"))
    seen, done = finished(client, resume.job_id)
    resumed_steps = [p.step for p in of_type(seen, "job.progress", resume.job_id)
                     if p.total == 60]
    assert resumed_steps and resumed_steps[0] > 50 and resumed_steps[-1] == 60  # not from 0
    summary = client.request(m.SessionOpen(session_id=sid))
    turns = {turn.turn_id: turn for turn in summary.turns}
    assert turns["turn-0001"].status == "finished" and summary.head == "turn-0001"

    # undo to the base, start a branch, cancel it, discard it
    summary = client.request(m.TurnCheckout(session_id=sid, turn_id="base"))
    assert summary.head == "base"
    branch = client.request(m.JobRunTurn(session_id=sid, instruction="make it blue",
                                         steps=200))
    wait_for_events(client, lambda e: e.header.type == "job.progress"
                    and e.message.job_id == branch.job_id and e.message.total == 200
                    and e.message.step >= 2, timeout=240)
    asked = time.monotonic()
    client.request(m.JobCancel(job_id=branch.job_id))
    wait_for_events(client, lambda e: e.header.type == "job.cancelled"
                    and e.message.job_id == branch.job_id, timeout=60)
    cancel_latency = time.monotonic() - asked
    assert cancel_latency < 10.0
    summary = client.request(m.SessionOpen(session_id=sid))
    turns = {turn.turn_id: turn for turn in summary.turns}
    assert turns["turn-0002"].status == "cancelled" and turns["turn-0002"].parent == "base"
    discard = client.request(m.JobDiscardTurn(session_id=sid, turn_id="turn-0002"))
    finished(client, discard.job_id)
    summary = client.request(m.SessionOpen(session_id=sid))
    assert [turn.turn_id for turn in summary.turns] == ["base", "turn-0001"]
    assert not (workspace / "turns" / "turn-0002").exists()
    print(f"cancel latency during a real turn: {cancel_latency:.3f} s")
    client.close()
    second.terminate()


def upload_folder(client, session_id: str, folder: Path, prefix: str) -> int:
    """What a remote client does: every file, in chunks, checksummed."""
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        relative = f"{prefix}/{path.relative_to(folder).as_posix()}"
        ready = client.request(m.UploadBegin(session_id=session_id, path=relative,
                                             size=len(data),
                                             sha256=hashlib.sha256(data).hexdigest()))
        for offset in range(0, len(data), ready.chunk_size):
            chunk = np.frombuffer(data[offset:offset + ready.chunk_size], dtype=np.uint8)
            client.request(m.UploadChunk(upload_id=ready.upload_id, offset=offset, data=chunk))
        client.request(m.UploadCommit(upload_id=ready.upload_id))
        count += 1
    return count


def test_uploaded_dataset_then_masks_export_and_refine(tmp_path, scene) -> None:
    (tmp_path / "outputs").mkdir()  # where the ns-train run below is written
    running = start_sidecar(tmp_path / "work", "--data-root", str(tmp_path / "outputs"),
                            "--data-root", str(scene.root), preload=True)
    client = running.client()
    created = client.request(m.SessionCreate(name="remote", preset="tiny"))
    sid = created.session_id
    assert upload_folder(client, sid, scene.root, "capture") > 24
    base = client.request(m.JobTrainBase(session_id=sid, steps=10, dataset_path="capture"))
    finished(client, base.job_id)
    summary = client.request(m.SessionOpen(session_id=sid))
    assert len(summary.view_names) == 24 and summary.head == "base"

    masks_job = client.request(m.JobPreviewMasks(session_id=sid, view_name=summary.view_names[0],
                                                 edit_queries=("sphere",),
                                                 keep_queries=("floor",)))
    seen, done = finished(client, masks_job.job_id)
    masks = of_type(seen, "masks.result", masks_job.job_id)[0]
    assert masks.queries == ("sphere", "floor") and masks.roles == ("edit", "keep")
    assert masks.heatmaps.shape == (2, 32, 32) and masks.soft_mask.shape == (32, 32)
    assert done.result["tiny_profile"] is True  # a pipeline check, labelled as such

    export = client.request(m.JobExport(session_id=sid, budget=500))
    seen, done = finished(client, export.job_id)
    cloud = of_type(seen, "export.result", export.job_id)[0]
    assert cloud.points.shape[1] == 3 and 0 < len(cloud.points) <= 500
    assert cloud.colors.shape == cloud.points.shape
    written = tmp_path / "work" / "sessions" / sid / cloud.path
    assert written.is_file() and written.read_bytes().startswith(b"ply")

    run_export = client.request(m.JobExport(session_id=sid, kind="nerfstudio_run"))
    seen, done = finished(client, run_export.job_id)
    run = of_type(seen, "export.result", run_export.job_id)[0]
    assert (run.kind, run.format, run.points) == ("nerfstudio_run", "yml", None)
    config_yml = tmp_path / "work" / "sessions" / sid / run.path
    assert run.path.startswith("exports/") and config_yml.name == "config.yml"
    run_dir = config_yml.parent
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.yml", "dataparser_transforms.json", "nerfstudio_models"]
    # ns-train names its checkpoint after the last iteration's index: 10 steps → step 9
    assert [p.name for p in (run_dir / "nerfstudio_models").iterdir()] == [
        "step-000000009.ckpt"]
    trainer = read_trainer_config(config_yml)
    data = Path(trainer.pipeline.datamanager.dataparser.data)
    assert data == tmp_path / "work" / "sessions" / sid / "uploads" / "capture"
    transform = json.loads((run_dir / "dataparser_transforms.json").read_text())
    assert np.array(transform["transform"]).shape == (3, 4) and transform["scale"] > 0

    refine = client.request(m.JobRefine(session_id=sid, steps=3, faces=False))
    _, done = finished(client, refine.job_id)
    summary = client.request(m.SessionOpen(session_id=sid))
    node = {turn.turn_id: turn for turn in summary.turns}[done.turn_id]
    assert node.kind == "refine" and node.status == "finished" and node.parent == "base"
    assert summary.head == done.turn_id

    # a cancelled refine resumes (job.resume_turn) from the checkpoint its cancel saved,
    # with the targets it upscaled before training: no upscaling the second time
    stopped = client.request(m.JobRefine(session_id=sid, turn_id="base", steps=60, faces=False))
    wait_for_events(client, lambda e: e.header.type == "job.progress"
                    and e.message.job_id == stopped.job_id and e.message.total == 60
                    and e.message.step >= 2, timeout=120)
    client.request(m.JobCancel(job_id=stopped.job_id))
    wait_for_events(client, lambda e: e.header.type == "job.cancelled"
                    and e.message.job_id == stopped.job_id, timeout=60)
    summary = client.request(m.SessionOpen(session_id=sid))
    node = summary.turns[-1]
    assert node.kind == "refine" and node.status == "cancelled"
    resume = client.request(m.JobResumeTurn(session_id=sid, turn_id=node.turn_id))
    seen, _ = finished(client, resume.job_id)
    progress = of_type(seen, "job.progress", resume.job_id)
    assert not [p for p in progress if p.message.startswith("refine_upscale")]
    resumed_steps = [p.step for p in progress if p.total == 60]
    assert resumed_steps[0] > 2 and resumed_steps[-1] == 60  # from the cancel, not from 0
    summary = client.request(m.SessionOpen(session_id=sid))
    assert summary.turns[-1].status == "finished" and summary.head == node.turn_id

    # a session made from an existing ns-train run: its model is the base, its views listed
    base_checkpoint = tmp_path / "work" / "sessions" / sid / "workspace" / "base" / "checkpoint.pt"
    config_yml = write_ns_train_run(base_checkpoint, scene.root, tmp_path / "outputs" / "run")
    imported = client.request(m.SessionCreate(name="from ns-train", nerfstudio_run=str(config_yml)))
    wait_for_events(client, lambda e: e.header.type == "job.finished"
                    and e.header.session == imported.session_id, timeout=120)
    summary = client.request(m.SessionOpen(session_id=imported.session_id))
    assert summary.head == "base" and [t.status for t in summary.turns] == ["finished"]
    assert sorted(summary.view_names) == sorted(view.name for view in scene.views)
    client.close()
    running.terminate()


def write_ns_train_run(checkpoint: Path, data: Path, run: Path) -> Path:
    """An output folder laid out as `ns-train nerfacto` writes it, from one of our fields."""
    import json

    import torch
    import yaml
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from nerfstudio.engine.trainer import TrainerConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    from edit3d.field import field_from_checkpoint

    field = field_from_checkpoint(checkpoint)
    config = TrainerConfig(
        method_name="nerfacto",
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(data=data, eval_mode="all")),
            model=field.config.nerfacto_config("cpu"),
        ),
    )
    (run / "nerfstudio_models").mkdir(parents=True)
    (run / "config.yml").write_text(yaml.dump(config))
    transform = {"transform": field.transform.tolist(), "scale": field.scale}
    (run / "dataparser_transforms.json").write_text(json.dumps(transform))
    pipeline = {f"_model.{k}": v for k, v in field.model.state_dict().items()}
    last = field.step - 1  # ns-train records the index of its last iteration
    torch.save({"step": last, "pipeline": pipeline},
               run / f"nerfstudio_models/step-{last:09d}.ckpt")
    return run / "config.yml"


class _Vanish(BaseException):
    """Stops a run without any handler seeing it, as a killed process would."""


def test_recovery_marks_running_nodes_even_if_their_pid_is_alive(tmp_path, scene) -> None:
    from edit3d.workspace import Workspace
    from sidecar import workspaces

    workspace = Workspace.create(tmp_path / "ws", dataset=scene.root, preset="tiny")

    def vanish(_event) -> None:
        raise _Vanish

    with pytest.raises(_Vanish):
        workspace.train_base(steps=5, progress=vanish)
    record = Workspace.open(tmp_path / "ws").turn("base")
    assert record.status == "running" and record.owner["pid"] == __import__("os").getpid()
    # this (live) process is the recorded owner: only the lock-holder's rule catches it
    assert workspaces.recover(tmp_path / "ws") == ["base"]
    assert Workspace.open(tmp_path / "ws").turn("base").status == "interrupted"
    assert workspaces.recover(tmp_path / "ws") == []
