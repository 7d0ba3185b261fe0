"""A real sidecar subprocess over real sockets: handshake, lock, sessions, uploads, jobs,
events, crash survival, reconnect and resync."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import sidecar_test_jobs as tj
from sidecar_harness import REPO, of_type, start_sidecar, wait_for_events

from protocol import messages as m
from protocol.errors import RemoteError


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    running = start_sidecar(tmp_path_factory.mktemp("work"))
    yield running
    running.terminate()


@pytest.fixture(scope="module")
def client(sidecar):
    client = sidecar.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def session_id(client):
    summary = client.request(m.SessionCreate(name="lifecycle"))
    client.follow(summary.session_id, summary.last_seq)
    return summary.session_id


def test_handshake_connection_file_and_lock(sidecar, client) -> None:
    reply = client.server
    assert reply.server_version[0] == 2 and reply.device == "cpu"
    assert "test.count" in reply.capabilities and "upload" in reply.capabilities
    assert "profile.tiny" in reply.capabilities
    # The default local bind: a private ipc:// socket, whose permissions authenticate every
    # byte, so buffers travel without digests.
    assert sidecar.endpoint == f"ipc://{sidecar.workdir / 'run' / 'sidecar.sock'}"
    assert reply.buffer_integrity == "transport"
    assert stat.S_IMODE((sidecar.workdir / "run").stat().st_mode) == 0o700
    # Which real weights the server has, by registered name: each name on one side.
    from edit3d.models.sources import ALL_SOURCES, weights_presence

    assert set(reply.weights_present) | set(reply.weights_missing) == set(ALL_SOURCES)
    assert not set(reply.weights_present) & set(reply.weights_missing)
    present = {name for name, here in weights_presence().items() if here}
    assert set(reply.weights_present) == present
    # The editor settings an unset request field gets: edit3d's own defaults.
    from edit3d.editing.settings import EditorSettings

    assert reply.editor_defaults.given() == {
        name: value
        for name, value in dataclasses.asdict(EditorSettings()).items()
        if value is not None
    }
    assert reply.editor_defaults.guidance_scale == EditorSettings().guidance_scale
    assert stat.S_IMODE(sidecar.connection_file.stat().st_mode) == 0o600
    second = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "--workdir", str(sidecar.workdir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 3
    assert f"pid {sidecar.process.pid}" in second.stderr and "already serves" in second.stderr


def test_non_loopback_bind_needs_curve(tmp_path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "--workdir", str(tmp_path),
         "--bind", "tcp://0.0.0.0:0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--curve" in refused.stderr
    assert not (tmp_path / "sidecar.lock").exists()


def test_sessions_create_list_open_delete(client) -> None:
    created = client.request(m.SessionCreate(name="to delete"))
    listed = client.request(m.SessionList())
    assert created.session_id in [s.session_id for s in listed.sessions]
    opened = client.request(m.SessionOpen(session_id=created.session_id))
    assert opened.name == "to delete" and opened.turns == () and opened.head is None
    assert client.request(m.SessionDelete(session_id=created.session_id)).type_name == "ok"
    listed = client.request(m.SessionList())
    assert created.session_id not in [s.session_id for s in listed.sessions]
    with pytest.raises(RemoteError) as gone:
        client.request(m.SessionOpen(session_id=created.session_id))
    assert gone.value.code == "not_found"
    with pytest.raises(RemoteError) as missing:
        client.request(m.SessionCreate(name="x", dataset_path="/no/such/dataset"))
    assert missing.value.code == "not_found"


def _upload(client, session_id, path, data, sha=None):
    ready = client.request(m.UploadBegin(session_id=session_id, path=path, size=len(data),
                                         sha256=sha or hashlib.sha256(data).hexdigest()))
    for offset in range(0, len(data), 5):
        chunk = np.frombuffer(data[offset:offset + 5], dtype=np.uint8)
        client.request(m.UploadChunk(upload_id=ready.upload_id, offset=offset, data=chunk))
    return client.request(m.UploadCommit(upload_id=ready.upload_id))


def test_upload_happy_path_and_rejections(sidecar, client, session_id) -> None:
    data = b"transforms and images, in chunks"
    done = _upload(client, session_id, "scene/transforms.json", data)
    assert done.path == "scene/transforms.json" and done.size == len(data)
    landed = sidecar.workdir / "sessions" / session_id / "uploads" / "scene" / "transforms.json"
    assert landed.read_bytes() == data
    with pytest.raises(RemoteError) as bad_sha:
        _upload(client, session_id, "scene/other.bin", data, sha="0" * 64)
    assert bad_sha.value.code == "invalid_field" and bad_sha.value.detail == "checksum_mismatch"
    assert not landed.with_name("other.bin").exists()
    for path in ("../escape.txt", "/etc/passwd", "a/../../b"):
        with pytest.raises((RemoteError, Exception)) as unsafe:
            client.request(m.UploadBegin(session_id=session_id, path=path, size=1,
                                         sha256="0" * 64))
        assert "path" in str(unsafe.value).lower()
    os.symlink(sidecar.workdir, landed.parent / "link")
    with pytest.raises(RemoteError) as through_link:
        _upload(client, session_id, "scene/link/x.bin", b"x")
    assert through_link.value.detail == "unsafe_path"
    assert not (sidecar.workdir / "x.bin").exists()
    # the server still answers after all of that
    assert client.request(m.Heartbeat()).server_time > 0


def test_job_queue_progress_seq_cancel_and_status_while_busy(client, session_id) -> None:
    long = client.request(tj.TestCount(session_id=session_id, steps=100_000, delay_s=0.01))
    # 60 ms per step: above the worker's 50 ms progress coalescing, so every step is sent
    short = client.request(tj.TestCount(session_id=session_id, steps=3, delay_s=0.06,
                                        preview=True))
    assert short.queue_position >= 1
    seen = wait_for_events(client, lambda e: e.header.type == "job.progress"
                           and e.message.job_id == long.job_id and e.message.step >= 5)
    beat = client.request(m.Heartbeat())
    assert beat.busy and beat.running_job_id == long.job_id
    assert beat.last_progress_ts is not None and beat.server_time - beat.last_progress_ts < 2.0
    status = client.request(m.JobStatus(session_id=session_id))
    states = {info.job_id: info for info in status.jobs}
    assert states[long.job_id].state == "running" and states[long.job_id].queue_position == 0
    assert states[short.job_id].state == "queued" and states[short.job_id].queue_position == 1
    started = time.monotonic()
    client.request(m.JobCancel(job_id=long.job_id))
    seen += wait_for_events(client, lambda e: e.header.type == "job.cancelled")
    latency = time.monotonic() - started
    assert latency < 1.0, f"cancel took {latency:.3f} s"
    seen += wait_for_events(client, lambda e: e.header.type == "job.finished"
                            and e.message.job_id == short.job_id)
    seqs = [e.header.seq for e in seen if e.header.session == session_id]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(b == a + 1 for a, b in itertools.pairwise(seqs))
    progress = of_type(seen, "job.progress", short.job_id)
    assert [p.step for p in progress] == [1, 2, 3]
    preview = of_type(seen, "job.preview", short.job_id)[0]
    assert preview.image.dtype == np.uint8 and preview.image.shape == (4, 6, 3)
    assert preview.image[0, 0].tolist() == [255, 128, 64]
    finished = of_type(seen, "job.finished", short.job_id)[0]
    assert finished.result["counted"] == 3


def test_failure_traceback_and_worker_crash_survival(client, session_id) -> None:
    failing = client.request(tj.TestRaise(session_id=session_id))
    crashing = client.request(tj.TestSegfault(session_id=session_id))
    after = client.request(tj.TestCount(session_id=session_id, steps=2))
    seen = wait_for_events(client, lambda e: e.header.type in ("job.finished", "job.failed")
                           and e.message.job_id == after.job_id, timeout=60)
    failed = {f.job_id: f for f in of_type(seen, "job.failed")}
    assert "deliberate failure in test.raise" in failed[failing.job_id].reason
    assert "Traceback" in failed[failing.job_id].traceback
    assert "SIGSEGV" in failed[crashing.job_id].reason
    assert after.job_id in [f.job_id for f in of_type(seen, "job.finished")]
    status = client.request(m.JobStatus(job_id=crashing.job_id))
    assert status.jobs[0].state == "failed"
    # the session is intact: it lists, opens, and its history records the crash
    assert client.request(m.SessionOpen(session_id=session_id)).session_id == session_id


def test_delete_refused_while_a_job_of_the_session_runs(client) -> None:
    busy = client.request(m.SessionCreate(name="busy"))
    job = client.request(tj.TestCount(session_id=busy.session_id, steps=10_000, delay_s=0.01))
    with pytest.raises(RemoteError) as refused:
        client.request(m.SessionDelete(session_id=busy.session_id))
    assert refused.value.code == "conflict"
    client.request(m.JobCancel(job_id=job.job_id))
    wait_for_events(client, lambda e: e.header.type == "job.cancelled"
                    and e.message.job_id == job.job_id)
    assert client.request(m.SessionDelete(session_id=busy.session_id)).type_name == "ok"


def test_reconnect_and_resync_by_sequence_number(sidecar, client, session_id) -> None:
    other = sidecar.client("second")
    summary = other.request(m.SessionOpen(session_id=session_id))
    other.follow(session_id, summary.last_seq)
    # every client that opened the session gets its events, not only the submitter
    first = client.request(tj.TestCount(session_id=session_id, steps=1))
    for watcher in (client, other):
        wait_for_events(watcher, lambda e: e.header.type == "job.finished"
                        and e.message.job_id == first.job_id)
    summary = other.request(m.SessionOpen(session_id=session_id))
    other.close()  # the client goes away; events keep coming
    job = client.request(tj.TestCount(session_id=session_id, steps=4, delay_s=0.06))
    wait_for_events(client, lambda e: e.header.type == "job.finished"
                    and e.message.job_id == job.job_id)
    other.reconnect(timeout_s=20.0)
    seen = wait_for_events(other, lambda e: e.header.type == "events.replayed")
    replay = of_type(seen, "events.replayed")[0]
    assert replay.complete and replay.replayed >= 6
    replayed = [e for e in seen if e.header.session == session_id and e.header.seq]
    assert [e.header.seq for e in replayed] == list(
        range(summary.last_seq + 1, replay.last_seq + 1))
    assert [p.step for p in of_type(replayed, "job.progress", job.job_id)] == [1, 2, 3, 4]
    # a number from before anything this ring holds → snapshot instead of a silent gap
    stale = other.request(m.EventsSince(session_id=session_id, after_seq=10**9))
    assert not stale.complete
    other.close()


def test_sigterm_stops_cleanly_and_releases_the_lock(tmp_path) -> None:
    running = start_sidecar(tmp_path)
    client = running.client()
    session = client.request(m.SessionCreate(name="survives"))
    job = client.request(tj.TestCount(session_id=session.session_id, steps=100_000))
    wait_for_events(client, lambda e: e.header.type == "job.progress")
    client.close()
    assert running.terminate(signal.SIGTERM) == 0
    assert "stopped" in running.process.stdout.read()
    again = start_sidecar(tmp_path)  # the lock was released
    client = again.client()
    listed = client.request(m.SessionList())
    assert [s.session_id for s in listed.sessions] == [session.session_id]
    history = (tmp_path / "sessions" / session.session_id / "session.json").read_text()
    assert job.job_id in history and '"cancelled"' in history
    client.close()
    again.terminate()


def test_a_known_type_the_sidecar_does_not_serve_gets_an_error(client) -> None:
    with pytest.raises(RemoteError) as refused:
        client.request(m.Ok(detail="not a request"))
    assert refused.value.code == "unknown_type"
    with pytest.raises(RemoteError) as no_job:
        client.request(m.JobStatus(job_id="nosuchjob"))
    assert no_job.value.code == "not_found"
    assert client.request(m.Heartbeat()).server_time > 0


def test_curve_encrypted_sidecar(tmp_path) -> None:
    from protocol.client import Client
    from protocol.connection import load_connection_file
    from protocol.errors import RequestTimeout

    running = start_sidecar(tmp_path, "--curve")
    try:
        info = load_connection_file(running.connection_file)
        assert info.curve_server_public_key and len(info.curve_server_public_key) == 40
        key_file = tmp_path / "curve_server.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        client = running.client()
        assert client.request(m.Heartbeat()).server_time > 0
        client.close()
        # the right HMAC key but no CURVE: the server never sees the request
        plain = Client(endpoint=info.endpoint, key=info.key)
        with pytest.raises(RequestTimeout):
            plain.connect(timeout_s=1.0)
        plain.close()
    finally:
        running.terminate()


def test_tcp_loopback_bind_signs_buffers_with_digests(tmp_path) -> None:
    running = start_sidecar(tmp_path / "tcp", "--bind", "tcp://127.0.0.1:0")
    try:
        assert running.endpoint.startswith("tcp://127.0.0.1:")
        assert not running.endpoint.endswith(":0")
        client = running.client()
        assert client.connect(timeout_s=30).buffer_integrity == "digest"
        assert client.codec.buffer_digests
        assert client.request(m.Heartbeat()).server_time > 0
        client.close()
    finally:
        running.terminate()


def test_endpoint_in_use_is_a_clear_error(sidecar, tmp_path) -> None:
    taken = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "--workdir", str(tmp_path), "--no-preload",
         "--bind", sidecar.endpoint], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert taken.returncode == 4 and "cannot bind" in taken.stderr
    assert not (tmp_path / "connection.json").exists()


def test_job_events_name_the_request_that_created_the_job(client, session_id) -> None:
    msg_id = client.send(tj.TestCount(session_id=session_id, steps=2))
    seen = wait_for_events(client, lambda e: e.header.parent_id == msg_id
                           and e.header.type == "job.accepted")
    job_id = next(e for e in seen if e.header.type == "job.accepted").message.job_id
    seen += wait_for_events(client, lambda e: e.header.type == "job.finished"
                            and e.message.job_id == job_id)
    events = [e for e in seen if getattr(e.message, "job_id", None) == job_id and e.header.seq]
    assert {e.header.type for e in events} >= {"job.queued", "job.started", "job.finished"}
    assert {e.header.parent_id for e in events} == {msg_id}


def test_a_client_that_sees_the_connection_file_is_answered_at_once(tmp_path) -> None:
    """The connection file says "ready": a client that connects the moment it appears is
    answered within the add-on's 2 s handshake limit, not after the server's set-up."""
    from protocol.client import Client
    from protocol.connection import load_connection_file

    workdir = tmp_path / "work"
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "--workdir", str(workdir), "--profile", "tiny",
         "--device", "cpu"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (workdir / "connection.json").exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        client = Client(load_connection_file(workdir / "connection.json"))
        started = time.monotonic()
        reply = client.connect(timeout_s=1.5)
        assert reply.device == "cpu" and time.monotonic() - started < 1.5
        client.close()
    finally:
        process.terminate()
        process.wait(30)
