"""The model registry: tiny builds, local copies, verified fetches, and the models CLI.

Nothing here reaches the network: URL fetches read file:// URLs from a temporary folder or
a loopback HTTP server, and the hub path is exercised with huggingface_hub's two network
calls replaced (its offline cache look-up stays real).
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.server
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import huggingface_hub
import numpy as np
import pytest
import torch
from hub_layouts import populate_hub_cache

from edit3d.cli import main as cli_main
from edit3d.models import registry, sources
from edit3d.models.registry import (
    ChecksumMismatch,
    HubSource,
    ModelNotAvailable,
    ModelSpec,
    UrlSource,
    load_model,
)

LINEAR_FILE = "linear.pt"
HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"


def _linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


def _load_linear(path: Path, device: str) -> dict:
    layer = torch.nn.Linear(4, 3)
    weights = path / LINEAR_FILE if path.is_dir() else path
    layer.load_state_dict(torch.load(weights, weights_only=True))
    return {"layer": layer.to(device), "path": path}


def _build_tiny_linear(seed: int, device: str) -> dict:
    # No seeding here on purpose: the registry must seed around the builder.
    return {"layer": torch.nn.Linear(4, 3).to(device), "seed": seed}


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(folder))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in ("test-linear", "test-hub"):
        monkeypatch.delenv(registry.model_path_env_var(name), raising=False)
    return folder


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, str]:
    """A weights file "published" on a file:// server, and its SHA-256."""
    served = tmp_path / "server" / LINEAR_FILE
    served.parent.mkdir()
    torch.save(_linear(7).state_dict(), served)
    return served, hashlib.sha256(served.read_bytes()).hexdigest()


def _url_spec(served: Path, sha256: str, size: int | None = None) -> ModelSpec:
    return ModelSpec(
        name="test-linear",
        description="a 4->3 linear layer",
        source=UrlSource(url=served.as_uri(), sha256=sha256, filename=LINEAR_FILE, size_bytes=size),
        load_real=_load_linear,
        build_tiny=_build_tiny_linear,
    )


def _hub_spec() -> ModelSpec:
    return ModelSpec(
        name="test-hub",
        description="a hub-hosted linear layer",
        source=HubSource(
            repo_id="someone/linear",
            revision=HUB_REVISION,
            ignore_patterns=("*.h5",),
            required_files=("config.json", LINEAR_FILE),
        ),
        load_real=_load_linear,
        build_tiny=_build_tiny_linear,
    )


# --- tiny profile ------------------------------------------------------------------------


def test_tiny_is_seeded_and_leaves_the_global_rng_alone(models_dir: Path, published) -> None:
    with registry.temporary_registration(_url_spec(*published)):
        torch.manual_seed(123)
        expected_next = torch.rand(3)
        torch.manual_seed(123)
        first = load_model("test-linear", "tiny", seed=1)
        assert torch.equal(torch.rand(3), expected_next)
        again = load_model("test-linear", "tiny", seed=1)
        other = load_model("test-linear", "tiny", seed=2)
    assert first["seed"] == 1
    assert torch.equal(first["layer"].weight, again["layer"].weight)
    assert not torch.equal(first["layer"].weight, other["layer"].weight)


def test_registering_a_taken_name_is_an_error(published) -> None:
    spec = _url_spec(*published)
    with registry.temporary_registration(spec):
        with pytest.raises(ValueError, match="test-linear"):
            registry.register(_url_spec(*published))
        assert registry.get_spec("test-linear") is spec
    assert "test-linear" not in registry.registered()


def test_unknown_names_and_profiles_are_rejected(published) -> None:
    with pytest.raises(ValueError, match="no-such-model"):
        registry.get_spec("no-such-model")
    with (
        registry.temporary_registration(_url_spec(*published)),
        pytest.raises(ValueError, match="profile"),
    ):
        load_model("test-linear", "huge")  # type: ignore[arg-type]


# --- real weights: missing, overridden ---------------------------------------------------


def test_missing_real_model_names_both_remedies(models_dir: Path, published) -> None:
    with (
        registry.temporary_registration(_url_spec(*published)),
        pytest.raises(ModelNotAvailable) as caught,
    ):
        load_model("test-linear")
    message = str(caught.value)
    assert "'test-linear'" in message
    assert "edit3d models fetch test-linear" in message
    assert "EDIT3D_MODEL_PATH_TEST_LINEAR" in message
    assert "local_path" in message


def test_local_path_argument_and_environment_are_honoured(
    models_dir: Path, published, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, sha = published
    expected = _linear(7).weight
    with registry.temporary_registration(_url_spec(served, sha)):
        by_argument = load_model("test-linear", local_path=served)
        assert torch.equal(by_argument["layer"].weight, expected)
        assert by_argument["path"] == served
        monkeypatch.setenv("EDIT3D_MODEL_PATH_TEST_LINEAR", str(served.parent))
        by_env = load_model("test-linear")
        assert by_env["path"] == served  # a folder resolves to the release file inside it
        assert torch.equal(by_env["layer"].weight, expected)
        monkeypatch.setenv("EDIT3D_MODEL_PATH_TEST_LINEAR", str(served.parent / "nothing"))
        with pytest.raises(ModelNotAvailable, match="EDIT3D_MODEL_PATH_TEST_LINEAR"):
            load_model("test-linear")


# --- URL fetch ---------------------------------------------------------------------------


def test_url_fetch_verifies_and_caches(models_dir: Path, published) -> None:
    served, sha = published
    progress: list[tuple[int, int | None]] = []
    with registry.temporary_registration(_url_spec(served, sha, served.stat().st_size)):
        assert not registry.is_present("test-linear")
        path = registry.fetch("test-linear", on_progress=lambda d, t: progress.append((d, t)))
        assert path == models_dir / "test-linear" / LINEAR_FILE
        assert path.read_bytes() == served.read_bytes()
        assert registry.is_present("test-linear")
        assert progress[-1][0] == served.stat().st_size
        loaded = load_model("test-linear")
        assert loaded["path"] == path
        assert torch.equal(loaded["layer"].weight, _linear(7).weight)
        assert sorted(p.name for p in path.parent.iterdir()) == [LINEAR_FILE]


def test_url_fetch_with_wrong_checksum_leaves_nothing(models_dir: Path, published) -> None:
    served, _ = published
    with registry.temporary_registration(_url_spec(served, "ab" * 32)):
        with pytest.raises(ChecksumMismatch, match="sha256"):
            registry.fetch("test-linear")
        assert not registry.is_present("test-linear")
        folder = models_dir / "test-linear"
        assert list(folder.iterdir()) == []
        with pytest.raises(ModelNotAvailable):
            load_model("test-linear")


def test_url_fetch_with_wrong_size_is_rejected(models_dir: Path, published) -> None:
    served, sha = published
    with registry.temporary_registration(_url_spec(served, sha, served.stat().st_size + 1)):
        with pytest.raises(ChecksumMismatch, match="bytes"):
            registry.fetch("test-linear")
        assert list((models_dir / "test-linear").iterdir()) == []


def test_a_partial_or_truncated_copy_is_never_used(models_dir: Path, published) -> None:
    served, sha = published
    size = served.stat().st_size
    with registry.temporary_registration(_url_spec(served, sha, size)):
        folder = models_dir / "test-linear"
        folder.mkdir(parents=True)
        (folder / f"{LINEAR_FILE}.part").write_bytes(served.read_bytes())  # not renamed yet
        assert not registry.is_present("test-linear")
        (folder / LINEAR_FILE).write_bytes(served.read_bytes()[: size // 2])  # copy cut short
        assert not registry.is_present("test-linear")
        with pytest.raises(ModelNotAvailable):
            load_model("test-linear")
        (folder / LINEAR_FILE).write_bytes(served.read_bytes())  # a whole copy, dropped in
        assert registry.locate("test-linear") == registry.Location(
            "models-dir", folder / LINEAR_FILE, True
        )


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload; honours `Range: bytes=N-`; can cut a response short once."""

    payload = b""
    cut_after: int | None = None
    ranges: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        wanted = self.headers.get("Range")
        type(self).ranges.append(wanted)
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
        body = self.payload[start:]
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_after is not None:
            type(self).cut_after, limit = None, self.cut_after
            self.wfile.write(body[:limit])  # then drop the connection mid-file
            return
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def range_server(published) -> object:
    served, _ = published
    _RangeHandler.payload = served.read_bytes()
    _RangeHandler.ranges = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{LINEAR_FILE}"
    server.shutdown()
    server.server_close()


def test_an_interrupted_download_continues_where_it_stopped(
    models_dir: Path, published, range_server: str
) -> None:
    served, sha = published
    size = served.stat().st_size
    spec = _url_spec(served, sha, size)
    source = UrlSource(url=range_server, sha256=sha, filename=LINEAR_FILE, size_bytes=size)
    spec = ModelSpec(spec.name, spec.description, source, spec.load_real, spec.build_tiny)
    _RangeHandler.cut_after = 300
    with registry.temporary_registration(spec):
        with pytest.raises(registry.FetchError, match="run the same command again"):
            registry.fetch("test-linear")
        partial = models_dir / "test-linear" / f"{LINEAR_FILE}.part"
        assert partial.stat().st_size == 300
        assert not registry.is_present("test-linear")
        path = registry.fetch("test-linear")
    assert _RangeHandler.ranges == [None, "bytes=300-"]
    assert path.read_bytes() == served.read_bytes()
    assert not partial.exists()


# --- hub fetch ---------------------------------------------------------------------------


class _FakeHub:
    """Stands in for the two network calls; records what was requested."""

    def __init__(self, files: dict[str, bytes], corrupt: str | None = None) -> None:
        self.files, self.corrupt, self.calls = files, corrupt, []

    def model_info(self, repo_id: str, *, revision: str, files_metadata: bool, **_):
        self.calls.append(("model_info", repo_id, revision, files_metadata))
        return SimpleNamespace(siblings=[self._sibling(n, d) for n, d in self.files.items()])

    @staticmethod
    def _sibling(name: str, data: bytes) -> SimpleNamespace:
        digest = hashlib.sha256(data).hexdigest()
        lfs = SimpleNamespace(sha256=digest) if name.endswith(".pt") else None
        return SimpleNamespace(rfilename=name, size=len(data), lfs=lfs)

    def snapshot_download(self, repo_id: str, *, revision: str, **kwargs):
        if kwargs.get("local_files_only"):  # the offline cache look-up is the real one
            return _REAL_SNAPSHOT_DOWNLOAD(repo_id, revision=revision, **kwargs)
        assert "local_dir" not in kwargs and "cache_dir" not in kwargs  # the standard cache
        allowed = kwargs.get("allow_patterns")
        self.calls.append(("snapshot_download", repo_id, revision, allowed))
        files = {
            name: b"x" + data[1:] if name == self.corrupt else data
            for name, data in self.files.items()
            if allowed is None or any(fnmatch.fnmatch(name, p) for p in allowed)
        }
        return str(_file_into_hub_cache(repo_id, revision, files))


_REAL_SNAPSHOT_DOWNLOAD = huggingface_hub.snapshot_download


def _file_into_hub_cache(repo_id: str, revision: str, files: dict[str, bytes]) -> Path:
    import tempfile

    with tempfile.TemporaryDirectory() as staging:
        for name, data in files.items():
            (Path(staging) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(staging) / name).write_bytes(data)
        cache = Path(huggingface_hub.constants.HF_HUB_CACHE)
        return populate_hub_cache(cache, repo_id, revision, Path(staging))


def _hub_files() -> dict[str, bytes]:
    import io

    buffer = io.BytesIO()
    torch.save(_linear(5).state_dict(), buffer)
    return {
        "config.json": b"{}",
        LINEAR_FILE: buffer.getvalue(),
        "tf_model.h5": b"h5",
        "sub/model.safetensors": b"safe",
        "sub/pytorch_model.bin": b"pickled duplicate",
    }


def _install(fake: _FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)

    def model_info(_api: object, repo_id: str, **kwargs: object) -> SimpleNamespace:
        return fake.model_info(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)


def test_hub_fetch_asks_for_the_pinned_revision_and_verifies(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeHub(_hub_files())
    _install(fake, monkeypatch)
    with registry.temporary_registration(_hub_spec()):
        path = registry.fetch("test-hub")
        cache = Path(huggingface_hub.constants.HF_HUB_CACHE)
        assert path == cache / "models--someone--linear" / "snapshots" / HUB_REVISION
        assert ("model_info", "someone/linear", HUB_REVISION, True) in fake.calls
        # Only what the listing, the ignore patterns and the safetensors preference leave.
        wanted = ["config.json", LINEAR_FILE, "sub/model.safetensors"]
        assert ("snapshot_download", "someone/linear", HUB_REVISION, sorted(wanted)) in fake.calls
        on_disk = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        assert on_disk == sorted(wanted)
        assert registry.locate("test-hub") == registry.Location("hf-cache", path, True)
        loaded = load_model("test-hub")
        assert loaded["path"] == path
        assert torch.equal(loaded["layer"].weight, _linear(5).weight)
        calls = len(fake.calls)
        registry.fetch("test-hub")  # already verified: no second download
        assert len(fake.calls) == calls


def test_hub_fetch_rejects_a_corrupted_lfs_file(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(_FakeHub(_hub_files(), corrupt=LINEAR_FILE), monkeypatch)
    with registry.temporary_registration(_hub_spec()):
        with pytest.raises(ChecksumMismatch, match=LINEAR_FILE):
            registry.fetch("test-hub")
        assert not registry.is_present("test-hub")
        with pytest.raises(ModelNotAvailable, match="someone/linear"):
            load_model("test-hub")


# --- CLI ---------------------------------------------------------------------------------


def test_models_list_shows_source_revision_state_and_path(
    models_dir: Path, published, capsys: pytest.CaptureFixture[str]
) -> None:
    served, sha = published
    with registry.temporary_registration(_url_spec(served, sha), _hub_spec()):
        registry.fetch("test-linear")
        assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("test-")}
    assert rows["test-linear"][1:] == [
        served.as_uri(),
        f"sha256:{sha[:12]}",
        "present",
        "models-dir",
        str(models_dir / "test-linear" / LINEAR_FILE),
    ]
    snapshot = Path(huggingface_hub.constants.HF_HUB_CACHE) / "models--someone--linear"
    assert rows["test-hub"][1:] == [
        "hub:someone/linear",
        HUB_REVISION[:12],
        "missing",
        "hf-cache",
        str(snapshot / "snapshots" / HUB_REVISION),
    ]
    assert str(models_dir) in out


def test_a_copied_hub_folder_in_the_models_directory_is_used(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = models_dir / "test-hub"
    copied.mkdir(parents=True)
    (copied / "config.json").write_text("{}")
    with registry.temporary_registration(_hub_spec()):
        assert registry.locate("test-hub") == registry.Location("models-dir", copied, False)
        torch.save(_linear(5).state_dict(), copied / LINEAR_FILE)
        assert torch.equal(load_model("test-hub")["layer"].weight, _linear(5).weight)
        monkeypatch.delenv(registry.MODELS_DIR_ENV)  # without the variable: the HF cache
        assert registry.locate("test-hub").origin == "hf-cache"


def test_models_fetch_cli_reports_success_and_failure(
    models_dir: Path, published, capsys: pytest.CaptureFixture[str]
) -> None:
    served, sha = published
    with registry.temporary_registration(_url_spec(served, sha)):
        assert cli_main(["models", "fetch", "test-linear"]) == 0
        assert "verified" in capsys.readouterr().out
    with registry.temporary_registration(_url_spec(served, "cd" * 32)):
        assert cli_main(["models", "fetch", "test-linear", "--force"]) == 1
        assert "FAILED" in capsys.readouterr().err
    assert cli_main(["models", "fetch"]) == 2


# --- what is registered, and the pinned sources -------------------------------------------


def test_registered_is_honest_about_family_modules() -> None:
    specs = registry.registered()
    errors = registry.family_errors()
    for module in registry.FAMILY_MODULES:
        assert (module in sys.modules) != (module in errors), module
    registering = {spec.load_real.__module__ for spec in specs.values()}
    assert not registering & set(errors)


def test_pinned_sources_are_complete() -> None:
    expected = {
        "instruct-pix2pix",
        "blip-caption-large",
        "blip-itm-large-coco",
        "sam-vit-h",
        "sam-vit-b",
        "realesrgan-x4plus",
        "gfpgan-v1.4",
        "clip-vit-l14",
        "clip-vit-b32",
        "yunet-face",
        "lpips-alex",
    }
    assert expected <= set(sources.ALL_SOURCES)
    for name, source in sources.ALL_SOURCES.items():
        if isinstance(source, HubSource):
            assert source.pinned, name
        elif len(source.sha256) < 64:
            # Only a prefix where the publisher's own file name is all it publishes
            # (torchvision, checked the same way by torch.hub).
            assert source.filename.split(".")[0].endswith(f"-{source.sha256}"), name
        else:
            assert len(source.sha256) == 64 and source.size_bytes, name
            assert source.url.startswith("https://") and source.url.endswith(source.filename)


def test_source_validation() -> None:
    with pytest.raises(ValueError, match="sha256"):
        UrlSource(url="https://x/y.pth", sha256="XYZ", filename="y.pth")
    with pytest.raises(ValueError, match="filename"):
        UrlSource(url="https://x/y.pth", sha256="ab" * 32, filename="../y.pth")
    # unnamed: the publisher's name, the URL's last path component (unquoted, no query)
    assert UrlSource(url="https://x/v1/my%20w.pth?dl=1", sha256="ab" * 32).filename == "my w.pth"
    with pytest.raises(ValueError, match="filename must be a bare file name, got ''"):
        UrlSource(url="https://x/", sha256="ab" * 32)
    with pytest.raises(ValueError, match="repo_id"):
        HubSource(repo_id="nameonly", revision=HUB_REVISION)
    assert not HubSource(repo_id="a/b", revision="main").pinned
    assert registry.model_path_env_var("gfpgan-v1.4") == "EDIT3D_MODEL_PATH_GFPGAN_V1_4"


def _modules(built: object) -> list[torch.nn.Module]:
    """The torch networks inside whatever a family's builder returns."""
    if isinstance(built, torch.nn.Module):
        return [built]
    values = vars(built).values() if hasattr(built, "__dict__") else ()
    return [value for value in values if isinstance(value, torch.nn.Module)]


def _parameters(built: object) -> list[torch.Tensor]:
    return [p.detach().clone() for m in _modules(built) for p in m.state_dict().values()]


def test_every_registered_family_builds_a_seeded_tiny_model_offline() -> None:
    specs = registry.registered()
    assert specs, "no model family registered anything"
    for name in specs:
        if name == "yunet-face":  # no network to randomise: the stand-in finds no faces
            assert load_model(name, "tiny").detect(np.zeros((8, 8, 3), np.float32)) == []
            continue
        first = _parameters(load_model(name, "tiny", seed=0))
        assert first, f"{name}: tiny build holds no torch network"
        same = _parameters(load_model(name, "tiny", seed=0))
        other = _parameters(load_model(name, "tiny", seed=1))
        assert all(torch.equal(a, b) for a, b in zip(first, same, strict=True)), name
        assert not all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other, strict=True)
        ), name
