"""One valid example of every message type (for tests and for the spec's round trips)."""

from __future__ import annotations

import numpy as np

from . import messages as m


def example_camera(width: int = 8, height: int = 6) -> m.Camera:
    c2w = np.eye(4)
    c2w[:3, 3] = (0.5, -1.0, 2.0)
    return m.Camera(c2w=c2w, fx=7.5, fy=7.5, cx=width / 2, cy=height / 2, width=width,
                    height=height, name="images/frame_00001.png")


def _turn(turn_id: str, parent: str | None, kind: str = "edit") -> m.TurnInfo:
    return m.TurnInfo(turn_id=turn_id, parent=parent, kind=kind, status="finished",
                      instruction=None if kind == "base" else "make it autumn",
                      created_ts=1.7e9, finished_ts=1.7e9 + 60, step=30, total_steps=30,
                      params={"mode": "edit3d", "edit_rate": 10, "lr": 0.0025, "masked": True})


def _job() -> m.JobInfo:
    return m.JobInfo(job_id="job-1", session_id="scene-1", kind="job.run_turn", state="running",
                     queue_position=0, step=5, total=30, submitted_ts=1.7e9,
                     last_progress_ts=1.7e9 + 5, message="editing view 3")


def example_messages() -> dict[str, m.Message]:
    """type name -> a valid message exercising its fields (arrays included)."""
    rng = np.random.default_rng(0)
    session = m.SessionInfo(session_id="scene-1", name="Garden", created_ts=1.7e9,
                            head="t1", turn_count=2, busy=False)
    c2w = np.stack([np.eye(4), np.eye(4)])
    c2w[1, :3, 3] = (1.0, 2.0, 3.0)
    examples: list[m.Message] = [
        m.Handshake(client_version=(1, 0), client_name="tests"),
        m.HandshakeReply(server_version=(1, 0), server_id="srv-1", sidecar_version="0.1.0",
                         device="cuda:0", gpu_name="H100", gpu_memory_total=80 << 30,
                         gpu_memory_free=70 << 30, capabilities=("ip2p", "adss"),
                         sessions=(session,)),
        m.Heartbeat(),
        m.HeartbeatReply(server_time=1.7e9, busy=True, running_job_id="job-1",
                         last_progress_ts=1.7e9 - 2, queue_length=1),
        m.ErrorReply(code="not_found", message="no session 'x'", detail="..."),
        m.Ok(detail="deleted"),
        m.SessionCreate(name="Garden", dataset_path="/data/garden", preset="small"),
        m.SessionList(),
        m.SessionListReply(sessions=(session,)),
        m.SessionOpen(session_id="scene-1"),
        m.SessionDelete(session_id="scene-1"),
        m.SessionSummary(session_id="scene-1", name="Garden", preset="small", head="t1",
                         turns=(_turn("base", None, "base"), _turn("t1", "base")),
                         view_names=("images/a.png", "images/b.png"), view_c2w=c2w,
                         view_intrinsics=np.array([[50.0, 50, 32, 24, 64, 48]] * 2),
                         last_seq=7),
        m.TurnCheckout(session_id="scene-1", turn_id="base"),
        m.UploadBegin(session_id="scene-1", path="images/a.png", size=3, sha256="a" * 64),
        m.UploadReady(upload_id="up-1", chunk_size=1 << 20),
        m.UploadChunk(upload_id="up-1", offset=0, data=np.frombuffer(b"abc", np.uint8)),
        m.UploadCommit(upload_id="up-1"),
        m.UploadAbort(upload_id="up-1"),
        m.UploadDone(path="images/a.png", size=3, sha256="a" * 64),
        m.DownloadChunk(session_id="scene-1", path="exports/cloud.ply", offset=3, length=1024),
        m.DownloadData(path="exports/cloud.ply", offset=3, size=6, sha256="b" * 64,
                       data=np.frombuffer(b"def", np.uint8)),
        m.JobTrainBase(session_id="scene-1", steps=100, preset="tiny"),
        m.JobPreviewMasks(session_id="scene-1", camera=example_camera(),
                          edit_queries=("hair",), keep_queries=("face",), caption="a man"),
        m.JobRunTurn(session_id="scene-1", instruction="make his hair red",
                     edit_queries=("hair",), mode="in2n", steps=200, parent_turn="t1",
                     edit_rate=5, edit_count=2, lr=0.001, seed=3,
                     editor_settings=m.EditorSettings(guidance_scale=6.0, diffusion_steps=10)),
        m.JobPreviewEdit(session_id="scene-1", camera=example_camera(),
                         instruction="make his hair red", edit_queries=("hair",), seed=3,
                         seeds=2, editor_settings=m.EditorSettings(image_guidance_scale=1.2)),
        m.JobResumeTurn(session_id="scene-1", turn_id="t2"),
        m.JobDiscardTurn(session_id="scene-1", turn_id="t2"),
        m.JobRefine(session_id="scene-1", turn_id="t1", steps=50, scale=2, faces=False),
        m.JobRender(session_id="scene-1", camera=example_camera(), outputs=("rgb", "depth")),
        m.JobExport(session_id="scene-1", kind="mesh", format="glb", budget=1000,
                    crop_min=(-1.0, -1.0, -1.0), crop_max=(1.0, 1.0, 1.0)),
        m.JobCancel(job_id="job-1"),
        m.JobStatus(session_id="scene-1"),
        m.JobAccepted(job_id="job-1", kind="job.render", queue_position=2),
        m.JobStateReply(jobs=(_job(),)),
        m.RenderResult(job_id="job-1", turn_id="t1", camera=example_camera(),
                       rgb=rng.random((6, 8, 3), dtype=np.float32),
                       depth=np.full((6, 8), np.inf, np.float32),
                       accumulation=rng.random((6, 8), dtype=np.float32)),
        m.ExportResult(job_id="job-1", kind="mesh", format="ply", path="exports/t1.ply",
                       points=rng.random((5, 3), dtype=np.float32),
                       colors=rng.integers(0, 256, (5, 3), dtype=np.uint8),
                       normals=rng.random((5, 3), dtype=np.float32),
                       faces=np.array([[0, 1, 2], [2, 3, 4]], np.int32)),
        m.MasksResult(job_id="job-1", caption="a man", queries=("hair", "face"),
                      roles=("edit", "keep"), heatmaps=rng.random((2, 6, 8), dtype=np.float32),
                      masks=rng.random((2, 6, 8)) > 0.5,
                      iou=np.array([0.8, 0.6], np.float32),
                      runner_up_iou=np.array([0.3, np.nan], np.float32),
                      soft_mask=rng.random((6, 8), dtype=np.float32)),
        m.EditPreviewResult(job_id="job-1", view_name="camera:preview", seeds=(3, 4),
                            before=rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
                            mask=rng.random((6, 8), dtype=np.float32),
                            after=rng.integers(0, 256, (2, 6, 8, 3), dtype=np.uint8)),
        m.JobQueued(job_id="job-1", kind="job.run_turn", position=1),
        m.JobStarted(job_id="job-1", kind="job.run_turn", turn_id="t2"),
        m.JobProgress(job_id="job-1", step=10, total=30, loss=0.01, eta_s=12.5,
                      message="training"),
        m.JobPreview(job_id="job-1", step=10,
                     image=rng.integers(0, 256, (6, 8, 4), dtype=np.uint8)),
        m.JobFinished(job_id="job-1", kind="job.run_turn", turn_id="t2",
                      result={"turn_id": "t2", "seconds": 12.5, "steps": 30}),
        m.JobFailed(job_id="job-1", kind="job.run_turn", reason="CUDA out of memory",
                    traceback="Traceback (most recent call last): ..."),
        m.JobCancelled(job_id="job-1", kind="job.run_turn", turn_id="t2"),
        m.EventsSince(session_id="scene-1", after_seq=4),
        m.EventsReplayed(session_id="scene-1", after_seq=4, last_seq=9, replayed=5,
                         complete=True, jobs=(_job(),)),
    ]
    return {message.type_name: message for message in examples}
