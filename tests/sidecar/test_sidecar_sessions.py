"""SessionStore: metadata, atomic writes, delete, and the upload path's defences."""

from __future__ import annotations

import errno
import hashlib
import json
import os

import pytest

from sidecar.errors import SidecarError
from sidecar.sessions import SessionLimits, SessionStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    return SessionStore(tmp_path, SessionLimits(max_upload_file_bytes=1000,
                                                max_upload_session_bytes=1500))


@pytest.fixture
def session_id(store):
    return store.create("capture", source="upload")["id"]


def upload(store, session_id, path, data, chunk=7):
    upload_id = store.begin_upload(session_id, path, len(data), sha(data))
    for offset in range(0, len(data), chunk):
        store.write_chunk(upload_id, offset, data[offset:offset + chunk])
    return store.commit_upload(upload_id)


def test_create_list_record_and_delete(store, tmp_path) -> None:
    first = store.create("first", source="dataset", source_path="/data/scene")
    second = store.create("second", source="upload")
    listed = store.list()
    assert [s["name"] for s in listed] == ["first", "second"]
    assert "jobs" not in listed[0]
    on_disk = json.loads((tmp_path / "sessions" / first["id"] / "session.json").read_text())
    assert on_disk["source"] == {"kind": "dataset", "path": "/data/scene"}
    store.record_job(first["id"], {"id": "j1", "state": "running"})
    store.record_job(first["id"], {"id": "j1", "state": "finished"})
    assert store.read(first["id"])["jobs"] == [{"id": "j1", "state": "finished"}]
    # no temporary file is left next to session.json
    assert sorted(os.listdir(tmp_path / "sessions" / first["id"])) == [
        "exports", "session.json", "uploads"]
    store.delete(second["id"])
    assert [s["id"] for s in store.list()] == [first["id"]]
    with pytest.raises(SidecarError) as gone:
        store.read(second["id"])
    assert gone.value.code == "not_found"


@pytest.mark.parametrize("bad_id", ["../x", "0123456789ab/..", "ABCDEF012345", "", 7])
def test_session_ids_are_validated(store, bad_id) -> None:
    with pytest.raises(SidecarError) as error:
        store.session_dir(bad_id)
    assert error.value.code == "bad_request"


def test_upload_happy_path_with_retried_chunk(store, session_id) -> None:
    data = bytes(range(256)) * 2
    upload_id = store.begin_upload(session_id, "scene/images/frame_00001.png", len(data),
                                   sha(data))
    assert store.write_chunk(upload_id, 0, data[:100]) == 100
    assert store.write_chunk(upload_id, 0, data[:100]) == 100  # retry after a lost reply
    assert store.write_chunk(upload_id, 100, data[100:]) == len(data)
    final = store.commit_upload(upload_id)
    assert final == store.uploads_dir(session_id) / "scene/images/frame_00001.png"
    assert final.read_bytes() == data
    assert store.resolve_upload_path(session_id, "scene") == final.parent.parent
    assert os.listdir(store.uploads_dir(session_id) / ".partial") == []


@pytest.mark.parametrize("path", [
    "/etc/passwd", "../escape.txt", "scene/../../escape", "a//b", "./a", "a\x00b",
    "a\\..\\b", ".partial/x", "", "x" * 2000,
])
def test_upload_rejects_unsafe_paths(store, session_id, path) -> None:
    with pytest.raises(SidecarError) as error:
        store.begin_upload(session_id, path, 1, sha(b"x"))
    assert error.value.code == "unsafe_path"


def test_upload_refuses_to_follow_a_symlink(store, session_id, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, store.uploads_dir(session_id) / "link")
    upload_id = store.begin_upload(session_id, "link/file.txt", 3, sha(b"abc"))
    store.write_chunk(upload_id, 0, b"abc")
    with pytest.raises(SidecarError) as error:
        store.commit_upload(upload_id)
    assert error.value.code == "unsafe_path"
    assert list(outside.iterdir()) == []
    # the symlink itself cannot be overwritten either
    with pytest.raises(SidecarError) as exists:
        store.begin_upload(session_id, "link", 3, sha(b"abc"))
    assert exists.value.code == "exists"


def test_upload_size_limits_and_checksum(store, session_id) -> None:
    with pytest.raises(SidecarError) as too_big:
        store.begin_upload(session_id, "big.bin", 1001, sha(b""))
    assert too_big.value.code == "too_large"
    upload(store, session_id, "a.bin", b"a" * 900)
    with pytest.raises(SidecarError) as quota:
        store.begin_upload(session_id, "b.bin", 700, sha(b""))
    assert quota.value.code == "too_large"
    # more bytes than declared
    upload_id = store.begin_upload(session_id, "c.bin", 4, sha(b"abcd"))
    with pytest.raises(SidecarError) as overflow:
        store.write_chunk(upload_id, 0, b"abcde")
    assert overflow.value.code == "too_large"
    # a gap in the offsets
    with pytest.raises(SidecarError) as gap:
        store.write_chunk(upload_id, 2, b"cd")
    assert gap.value.code == "bad_offset"
    # wrong content: refused at commit, partial file removed, destination never created
    store.write_chunk(upload_id, 0, b"abcX")
    with pytest.raises(SidecarError) as mismatch:
        store.commit_upload(upload_id)
    assert mismatch.value.code == "checksum_mismatch"
    assert not (store.uploads_dir(session_id) / "c.bin").exists()
    assert os.listdir(store.uploads_dir(session_id) / ".partial") == []
    # commit before all bytes arrived
    short = store.begin_upload(session_id, "d.bin", 4, sha(b"abcd"))
    store.write_chunk(short, 0, b"ab")
    with pytest.raises(SidecarError) as incomplete:
        store.commit_upload(short)
    assert incomplete.value.code == "bad_offset"


def test_upload_never_overwrites(store, session_id) -> None:
    upload(store, session_id, "t.json", b"{}")
    with pytest.raises(SidecarError) as error:
        store.begin_upload(session_id, "t.json", 2, sha(b"{}"))
    assert error.value.code == "exists"
    assert (store.uploads_dir(session_id) / "t.json").read_bytes() == b"{}"


def test_restart_cleans_partial_uploads_and_half_deletes(tmp_path) -> None:
    store = SessionStore(tmp_path)
    session_id = store.create("s", source="upload")["id"]
    store.begin_upload(session_id, "x.bin", 10, sha(b"0" * 10))
    (store.root / ".deleting-0123456789ab-abcdef").mkdir()
    fresh = SessionStore(tmp_path)
    fresh.clean_stale_state()
    assert os.listdir(fresh.uploads_dir(session_id) / ".partial") == []
    assert [p.name for p in fresh.root.iterdir()] == [session_id]


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_create_on_a_full_disk_leaves_no_session_and_no_temp_file(store, tmp_path,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(os, "fsync", _disk_full)  # the session.json write fails
    with pytest.raises(SidecarError) as full:
        store.create("full", source="upload")
    assert full.value.code == "no_space"
    monkeypatch.undo()
    assert store.list() == []
    assert [p for p in store.root.rglob("*")] == []  # no folder, no .tmp


def test_chunk_on_a_full_disk_or_lost_partial_gets_a_specific_code(store, session_id) -> None:
    data = b"0123456789"
    upload_id = store.begin_upload(session_id, "a.bin", len(data), sha(data))
    store.write_chunk(upload_id, 0, data[:4])
    partial = store.upload(upload_id).partial
    store.upload(upload_id).partial = type(partial)("/dev/full")
    with pytest.raises(SidecarError) as full:
        store.write_chunk(upload_id, 4, data[4:])
    assert full.value.code == "no_space" and store.upload(upload_id).received == 4
    store.upload(upload_id).partial = partial  # space again: the same chunk is accepted
    assert store.write_chunk(upload_id, 4, data[4:]) == len(data)
    assert store.commit_upload(upload_id).read_bytes() == data
    second = store.begin_upload(session_id, "b.bin", len(data), sha(data))
    store.upload(second).partial.unlink()  # e.g. cleaned up behind the upload's back
    with pytest.raises(SidecarError) as lost:
        store.write_chunk(second, 0, data)
    assert lost.value.code == "not_found" and "begin the upload again" in lost.value.message
