"""A client with the key trying what it should not: run code, reach server files, wedge a
session, fill the queue or the disk. Each case gets a clear refusal and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import sidecar_test_jobs as tj
from sidecar_harness import start_sidecar, wait_for_events

from protocol import messages as m
from protocol.errors import RemoteError

ALLOWED_EDITOR = "sidecar_test_jobs:TestCount"


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hostile")
    data = base / "data"
    (data / "capture").mkdir(parents=True)
    (base / "secret").mkdir()
    (base / "secret" / "transforms.json").write_text("{}")
    (data / "link-out").symlink_to(base / "secret")
    return {"base": base, "data": data, "work": base / "work"}


@pytest.fixture(scope="module")
def sidecar(roots):
    running = start_sidecar(roots["work"], "--data-root", str(roots["data"]),
                            "--allow-editor", ALLOWED_EDITOR)
    yield running
    running.terminate()


@pytest.fixture(scope="module")
def client(sidecar):
    client = sidecar.client()
    yield client
    client.close()


def session_dirs(sidecar) -> set[str]:
    return {p.name for p in (sidecar.workdir / "sessions").iterdir()}


def refused(client, request) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        client.request(request)
    return info.value


def test_editor_import_paths_come_only_from_the_command_line(client) -> None:
    session = client.request(m.SessionCreate(name="editors"))
    for spec in ("os:getcwd", "os:system", "builtins:eval", "sidecar_test_jobs:TestRaise"):
        error = refused(client, m.JobRunTurn(session_id=session.session_id,
                                             instruction="x", editor=spec))
        assert error.code == "not_allowed" and spec in error.message
        assert "--allow-editor" in error.message
    assert not client.request(m.JobStatus(session_id=session.session_id)).jobs  # none queued
    accepted = client.request(m.JobRunTurn(session_id=session.session_id, instruction="x",
                                           editor=ALLOWED_EDITOR))
    assert accepted.kind == "job.run_turn"  # what the operator named is accepted


def test_paths_outside_the_data_roots_read_as_not_found(sidecar, client, roots) -> None:
    before = session_dirs(sidecar)
    messages = set()
    for text in ("/etc", "/no/such/dir", str(roots["base"] / "secret"), "~",
                 str(roots["data"] / ".." / "secret"), "../secret", "link-out",
                 str(roots["data"] / "link-out"), str(sidecar.workdir)):
        for field_name in ("dataset_path", "nerfstudio_run"):
            error = refused(client, m.SessionCreate(name="probe", **{field_name: text}))
            assert error.code == "not_found", (text, error)
            messages.add(error.message.replace(repr(text), "PATH").replace(field_name, "F"))
    assert len(messages) == 1  # existing and missing paths answer alike
    assert session_dirs(sidecar) == before  # nothing was created


def test_paths_inside_a_data_root_or_the_uploads_are_accepted(sidecar, client, roots) -> None:
    absolute = client.request(m.SessionCreate(name="abs",
                                              dataset_path=str(roots["data"] / "capture")))
    relative = client.request(m.SessionCreate(name="rel", dataset_path="capture"))
    empty = client.request(m.SessionCreate(name="uploads"))
    uploads = sidecar.workdir / "sessions" / empty.session_id / "uploads"
    (uploads / "scene").mkdir()
    from_uploads = client.request(m.SessionCreate(name="up", dataset_path=str(uploads / "scene")))
    partial = refused(client, m.SessionCreate(name="p", dataset_path=str(uploads / ".partial")))
    assert partial.code == "not_found"
    for created, expected in ((absolute, roots["data"] / "capture"),
                              (relative, roots["data"] / "capture"),
                              (from_uploads, uploads / "scene")):
        meta = json.loads((sidecar.workdir / "sessions" / created.session_id / "session.json")
                          .read_text())
        assert meta["source"]["path"] == os.path.realpath(expected)


def test_bogus_preset_is_refused_and_creates_nothing(sidecar, client) -> None:
    before = session_dirs(sidecar)
    error = refused(client, m.SessionCreate(name="bogus", preset="no-such-preset"))
    assert error.code == "invalid_field" and "no-such-preset" in error.message
    assert session_dirs(sidecar) == before
    session = client.request(m.SessionCreate(name="ok", preset="tiny"))
    error = refused(client, m.JobTrainBase(session_id=session.session_id, preset="fast"))
    assert error.code == "invalid_field" and "'fast'" in error.message


def test_session_create_answering_busy_creates_nothing(sidecar, client) -> None:
    holder = client.request(m.SessionCreate(name="queue"))
    jobs = [client.request(tj.TestCount(session_id=holder.session_id, steps=100_000))]
    while True:
        try:
            jobs.append(client.request(tj.TestCount(session_id=holder.session_id, steps=1)))
        except RemoteError as full:
            assert full.code == "busy"
            break
    before = session_dirs(sidecar)
    for _ in range(5):
        error = refused(client, m.SessionCreate(name="burst", dataset_path="capture"))
        assert error.code == "busy"
    assert session_dirs(sidecar) == before
    for job in reversed(jobs):
        client.request(m.JobCancel(job_id=job.job_id))
    wait_for_events(client, lambda e: e.header.type == "job.cancelled"
                    and e.message.job_id == jobs[0].job_id)


def test_a_node_left_running_by_a_full_disk_is_released_at_once(client) -> None:
    session = client.request(m.SessionCreate(name="disk"))
    job = client.request(tj.TestOrphanNode(session_id=session.session_id, end="disk_full"))
    seen = wait_for_events(client, lambda e: e.header.type in ("job.failed", "job.finished")
                           and e.message.job_id == job.job_id, timeout=120)
    failed = seen[-1].message
    assert seen[-1].header.type == "job.failed" and failed.reason.startswith("no_space")
    summary = client.request(m.SessionOpen(session_id=session.session_id))
    assert {t.turn_id: t.status for t in summary.turns} == {"base": "interrupted"}


def _fake_sessions(workdir: Path, count: int) -> list[str]:
    """`count` sessions written straight to disk (the sidecar reads them at start)."""
    ids = []
    for i in range(count):
        session_id = f"{i:012x}"
        folder = workdir / "sessions" / session_id
        folder.mkdir(parents=True)
        (folder / "session.json").write_text(json.dumps({
            "format": 1, "id": session_id, "name": f"s{i}", "created_ts": 1_000_000.0 + i,
            "source": {"kind": "upload", "path": None}, "preset": "small", "jobs": []}))
        ids.append(session_id)
    return ids


@pytest.mark.slow
def test_ten_thousand_and_one_sessions_page_instead_of_locking_clients_out(tmp_path) -> None:
    ids = _fake_sessions(tmp_path / "work", 10_001)
    running = start_sidecar(tmp_path / "work")
    client = running.client()  # the handshake itself used to fail here (over its cap)
    try:
        assert client.server.session_count == 10_001
        newest = [s.session_id for s in client.server.sessions]
        assert newest == ids[::-1][:100]
        listed, after = [], None
        while True:
            page = client.request(m.SessionList(after=after, limit=3000), timeout_s=30)
            assert page.total == 10_001 and len(page.sessions) <= 3000
            listed += [s.session_id for s in page.sessions]
            after = page.next_after
            if after is None:
                break
        assert listed == ids[::-1]
        gone = ids[-1]
        client.request(m.SessionDelete(session_id=gone))
        stale = refused(client, m.SessionList(after=gone))
        assert stale.code == "not_found" and "first page" in stale.message
    finally:
        client.close()
        running.terminate()


def test_a_render_over_the_budget_is_refused_before_queueing(client) -> None:
    session = client.request(m.SessionCreate(name="render"))
    big = m.Camera(c2w=np.eye(4), fx=4000.0, fy=4000.0, cx=4096.0,
                   cy=4096.0, width=8192, height=8192)
    error = refused(client, m.JobRender(session_id=session.session_id, camera=big))
    assert error.code == "invalid_field" and "render budget" in error.message
    assert "uint8" in error.message
    assert not client.request(m.JobStatus(session_id=session.session_id)).jobs
    accepted = client.request(m.JobRender(session_id=session.session_id, camera=big,
                                          dtype="uint8"))
    client.request(m.JobCancel(job_id=accepted.job_id))


def test_a_wildcard_bind_advertises_a_reachable_endpoint(tmp_path) -> None:
    from sidecar.server import advertised_endpoint

    assert advertised_endpoint("tcp://0.0.0.0:5555", "gpu-box") == "tcp://gpu-box:5555"
    assert advertised_endpoint("tcp://0.0.0.0:5555", "gpu-box:7000") == "tcp://gpu-box:7000"
    assert advertised_endpoint("tcp://0.0.0.0:5555", "tcp://10.0.0.2:7000") == (
        "tcp://10.0.0.2:7000")
    assert advertised_endpoint("tcp://127.0.0.1:5555", None) == "tcp://127.0.0.1:5555"
    assert "0.0.0.0" not in advertised_endpoint("tcp://0.0.0.0:5555", None)
    running = start_sidecar(tmp_path / "work", "--bind", "tcp://0.0.0.0:0",
                            "--allow-insecure-remote", "--advertise", "127.0.0.1")
    try:
        written = json.loads(running.connection_file.read_text())["endpoint"]
        port = running.endpoint.rsplit(":", 1)[1]
        assert running.endpoint.startswith("tcp://0.0.0.0:")
        assert written == f"tcp://127.0.0.1:{port}"
        client = running.client()  # connects through the file's endpoint
        assert client.request(m.Heartbeat()).server_time > 0
        client.close()
    finally:
        running.terminate()


@pytest.mark.parametrize("option", [["--allow-editor", "os.getcwd"],
                                    ["--allow-editor", "os:getcwd;rm"],
                                    ["--data-root", "/no/such/folder"]])
def test_bad_operator_options_stop_the_sidecar_at_once(tmp_path, option) -> None:
    from sidecar.cli import main

    assert main(["--workdir", str(tmp_path / "work"), *option]) == 2
    assert not (tmp_path / "work").exists()  # refused before anything was made


def test_only_the_job_that_ran_releases_its_nodes(client) -> None:
    session = client.request(m.SessionCreate(name="owner"))
    sid = session.session_id
    holder = client.request(tj.TestOrphanNode(session_id=sid, end="hang"))
    wait_for_events(client, lambda e: e.header.type == "job.progress"
                    and e.message.job_id == holder.job_id, timeout=120)
    queued = client.request(tj.TestCount(session_id=sid, steps=1))
    client.request(m.JobCancel(job_id=queued.job_id))  # never ran: releases nothing
    wait_for_events(client, lambda e: e.header.type == "job.cancelled"
                    and e.message.job_id == queued.job_id)
    assert {t.turn_id: t.status for t in turns(client, sid)} == {"base": "running"}
    client.request(m.JobCancel(job_id=holder.job_id))  # the writer stops: released at once
    wait_for_events(client, lambda e: e.header.type == "job.cancelled"
                    and e.message.job_id == holder.job_id)
    assert {t.turn_id: t.status for t in turns(client, sid)} == {"base": "interrupted"}


def turns(client, session_id: str) -> tuple:
    return client.request(m.SessionOpen(session_id=session_id)).turns


def test_an_ns_train_run_may_not_name_a_dataset_outside_the_roots(sidecar, client,
                                                                   roots) -> None:
    import yaml
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from nerfstudio.engine.trainer import TrainerConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    run = roots["data"] / "outputs" / "run"
    run.mkdir(parents=True)
    config = TrainerConfig(method_name="nerfacto", pipeline=VanillaPipelineConfig(
        datamanager=VanillaDataManagerConfig(
            dataparser=NerfstudioDataParserConfig(data=roots["base"] / "secret"))))
    (run / "config.yml").write_text(yaml.dump(config))
    created = client.request(m.SessionCreate(name="run", nerfstudio_run=str(run / "config.yml")))
    seen = wait_for_events(client, lambda e: e.header.type in ("job.failed", "job.finished")
                           and e.header.session == created.session_id, timeout=120)
    assert seen[-1].header.type == "job.failed"
    assert "the run's dataset" in seen[-1].message.reason
    assert "not an existing path under a data root" in seen[-1].message.reason
    workspace = sidecar.workdir / "sessions" / created.session_id / "workspace"
    assert not (workspace / "workspace.json").exists()


def test_dataset_images_are_checked_against_the_roots_in_the_worker(tmp_path) -> None:
    from types import SimpleNamespace

    from sidecar.edit3d_jobs import check_images_inside_roots
    from sidecar.errors import SidecarError

    root, session = tmp_path / "data", tmp_path / "work" / "sessions" / "0123456789ab"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"png")
    (root / "images" / "b.png").symlink_to(tmp_path / "secret.png")
    ctx = SimpleNamespace(session_dir=session, data_roots=(root,))
    check_images_inside_roots(ctx, [root / "images" / "a.png"])
    for outside in (root / "images" / "b.png", root / ".." / "secret.png"):
        with pytest.raises(SidecarError) as refused_image:
            check_images_inside_roots(ctx, [outside])
        assert refused_image.value.code == "not_found"


def test_an_export_that_hits_a_full_disk_leaves_no_file(tmp_path) -> None:
    import errno

    from edit3d.export.geometry import PointCloud
    from sidecar.edit3d_jobs import write_export

    cloud = PointCloud(points=np.zeros((100, 3), np.float32),
                       colors=np.ones((100, 3), np.float32))
    write_export(tmp_path / "whole.ply", cloud, "ply")
    assert (tmp_path / "whole.ply").stat().st_size > 0
    full = tmp_path / "full.ply"
    full.symlink_to("/dev/full")  # every write to it fails with ENOSPC, as on a full disk
    with pytest.raises(OSError) as raised:
        write_export(full, cloud, "ply")
    assert raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole.ply"]
