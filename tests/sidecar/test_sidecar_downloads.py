"""download.chunk: exported files served in checksummed chunks, nothing outside exports/."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from sidecar_harness import start_sidecar

from protocol import RemoteError
from protocol import messages as m
from sidecar import downloads
from sidecar.errors import SidecarError


@pytest.fixture
def session_dir(tmp_path):
    (tmp_path / "exports" / "sub").mkdir(parents=True)
    (tmp_path / "exports" / "cloud.ply").write_bytes(b"ply\n" + bytes(range(256)) * 40)
    (tmp_path / "session.json").write_text("{}")
    return tmp_path


def test_chunks_reassemble_the_file_and_carry_its_checksum(session_dir) -> None:
    path = downloads.export_file(session_dir, "exports/cloud.ply")
    whole = path.read_bytes()
    got, offset = b"", 0
    while True:
        data, size, sha = downloads.read_chunk(path, offset, 1000)
        assert size == len(whole) and sha == hashlib.sha256(whole).hexdigest()
        if not data:
            break
        got, offset = got + data, offset + len(data)
    assert got == whole
    with pytest.raises(SidecarError, match="past the end"):
        downloads.read_chunk(path, len(whole) + 1, 10)


@pytest.mark.parametrize("relative", ["session.json", "exports/../session.json", "exports",
                                      "exports/sub", "exports/missing.ply", "/etc/passwd"])
def test_only_regular_files_under_exports_are_served(session_dir, relative) -> None:
    with pytest.raises(SidecarError) as caught:
        downloads.export_file(session_dir, relative)
    assert caught.value.code in ("unsafe_path", "not_found")


def test_links_are_never_followed(session_dir, tmp_path_factory) -> None:
    secret = tmp_path_factory.mktemp("outside") / "key.txt"
    secret.write_text("secret")
    os.symlink(secret, session_dir / "exports" / "link.ply")
    os.symlink(tmp_path_factory.getbasetemp(), session_dir / "exports" / "dir")
    for relative in ("exports/link.ply", "exports/dir/outside0/key.txt"):
        with pytest.raises(SidecarError, match="symbolic link"):
            downloads.export_file(session_dir, relative)


def test_a_sidecar_serves_an_export_over_the_protocol(tmp_path) -> None:
    running = start_sidecar(tmp_path / "work")
    client = running.client()
    try:
        assert "download" in client.server.capabilities
        sid = client.request(m.SessionCreate(name="dl")).session_id
        data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
        (tmp_path / "work" / "sessions" / sid / "exports" / "mesh.glb").write_bytes(data)
        reply = client.request(m.DownloadChunk(session_id=sid, path="exports/mesh.glb",
                                               offset=4096, length=10_000))
        assert (reply.offset, reply.size) == (4096, 5000)
        assert reply.data.tobytes() == data[4096:]
        assert reply.sha256 == hashlib.sha256(data).hexdigest()
        with pytest.raises(RemoteError) as refused:
            client.request(m.DownloadChunk(session_id=sid, path="session.json"))
        assert "not a file under exports/" in str(refused.value)
    finally:
        client.close()
        running.terminate()
