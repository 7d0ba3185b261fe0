"""One place that knows every network: where its real weights come from, and a tiny twin.

Each family module (`FAMILY_MODULES`) calls `register(ModelSpec(...))` at import. A spec
names a real source — a Hugging Face repository pinned to a commit (`HubSource`) or a
release file pinned by its SHA-256 (`UrlSource`) — a `load_real(path, device)` that turns
the local copy into the object the rest of `edit3d` uses, and a `build_tiny(seed, device)`
that builds a seeded, randomly initialised miniature with the same Python API, offline.

Where real weights are looked for, first match wins:

1. the `local_path` argument of `load_model`;
2. the environment variable `EDIT3D_MODEL_PATH_<NAME>` (name upper-cased, every
   non-alphanumeric character replaced by `_`, e.g. `EDIT3D_MODEL_PATH_GFPGAN_V1_4`);
3. the models directory (`EDIT3D_MODELS_DIR`, default `~/.cache/edit3d/models`), where
   `edit3d models fetch NAME` puts a copy and marks it verified.

Local overrides are trusted as given (they may be a compatible fine-tune); only copies in
the models directory carry a verified-checksum marker, and a copy without one — a download
cut short, a file dropped in by hand — is never used.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FAMILY_MODULES: tuple[str, ...] = (
    "edit3d.models.ip2p",
    "edit3d.models.blip",
    "edit3d.models.sam",
    "edit3d.models.sr",
    "edit3d.models.clip",
)
"""Modules that register model families, imported on first use of the registry."""

MODELS_DIR_ENV = "EDIT3D_MODELS_DIR"
MODEL_PATH_ENV_PREFIX = "EDIT3D_MODEL_PATH_"
VERIFIED_MARKER = ".edit3d-verified.json"
_CHUNK = 1 << 20

Profile = Literal["real", "tiny"]
ByteProgress = Callable[[int, int | None], None]
"""Download progress: (bytes done, bytes expected or None)."""


class ModelNotAvailable(RuntimeError):
    """Real weights were asked for and no local copy exists."""


class FetchError(RuntimeError):
    """A download failed; nothing partial was left in the models directory."""


class ChecksumMismatch(FetchError):
    """A downloaded file's digest or size differs from the pinned one."""


_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face model repository pinned to one commit."""

    repo_id: str
    """Repository id, e.g. "timbrooks/instruct-pix2pix"."""
    revision: str
    """Commit id (40 hex digits). A branch name is accepted but reported as unpinned: what
    it names changes under the user."""
    allow_patterns: tuple[str, ...] = ()
    """Only files matching one of these globs are fetched (empty: all files)."""
    ignore_patterns: tuple[str, ...] = ()
    """Files matching one of these globs are skipped (e.g. monolithic .ckpt copies)."""
    prefer_safetensors: bool = True
    """Skip pickled .bin weights where the same folder has safetensors of that precision."""
    license: str = ""
    """Licence of the published weights, as stated by the publisher."""
    size_bytes: int | None = None
    """Approximate download size with the patterns applied, for users (not verified)."""

    def __post_init__(self) -> None:
        if "/" not in self.repo_id:
            raise ValueError(f"repo_id must be 'owner/name', got {self.repo_id!r}")
        if not self.revision or any(c.isspace() for c in self.revision):
            raise ValueError(f"revision must be a commit id, got {self.revision!r}")

    @property
    def pinned(self) -> bool:
        """Whether the revision is a full commit id (reproducible), not a branch or tag."""
        return len(self.revision) == 40 and bool(_HEX.match(self.revision))

    def wants(self, relative_path: str) -> bool:
        """Whether a repository file is part of this source after the patterns."""
        if self.allow_patterns and not _matches(relative_path, self.allow_patterns):
            return False
        return not _matches(relative_path, self.ignore_patterns)


@dataclass(frozen=True)
class UrlSource:
    """A single released file pinned by its SHA-256."""

    url: str
    """Where the publisher serves the file (https://, or file:// for mirrors and tests)."""
    sha256: str
    """Lower-case hex SHA-256 of the file; a prefix (>= 8 hex digits) where only that is
    published."""
    filename: str
    """Name the file is stored under in the models directory."""
    size_bytes: int | None = None
    """Exact size in bytes when known; checked after download."""
    license: str = ""
    """Licence of the published weights, as stated by the publisher."""

    def __post_init__(self) -> None:
        if not (8 <= len(self.sha256) <= 64) or not _HEX.match(self.sha256):
            raise ValueError(f"sha256 must be 8-64 lower-case hex digits, got {self.sha256!r}")
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"filename must be a bare file name, got {self.filename!r}")

    def digest_matches(self, hexdigest: str) -> bool:
        return hexdigest.startswith(self.sha256)


Source = HubSource | UrlSource


@dataclass(frozen=True)
class ModelSpec:
    """A network the project can load: its real source and its tiny offline twin."""

    name: str
    """Registered name, e.g. "sam-vit-h"."""
    description: str
    """One line for `edit3d models list`."""
    source: Source
    """Where the real weights come from."""
    load_real: Callable[[Path, str], object]
    """(local path, torch device) -> the object callers use. The path is the repository
    folder for a HubSource and the file for a UrlSource (or whatever a local override
    names)."""
    build_tiny: Callable[[int, str], object]
    """(seed, torch device) -> a random miniature with the same API; pipeline checks only."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", self.name):
            raise ValueError(f"model name must be lower-case [a-z0-9.-], got {self.name!r}")


@dataclass
class _Registry:
    specs: dict[str, ModelSpec] = field(default_factory=dict)
    family_errors: dict[str, str] = field(default_factory=dict)
    families_loaded: bool = False


_REGISTRY = _Registry()


# --- registration ------------------------------------------------------------------------


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a spec. A second spec under a taken name is an error unless `replace`."""
    existing = _REGISTRY.specs.get(spec.name)
    if existing is not None and existing is not spec and not replace:
        raise ValueError(f"model name {spec.name!r} is already registered")
    _REGISTRY.specs[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a spec (tests and plug-ins); unknown names are ignored."""
    _REGISTRY.specs.pop(name, None)


def _load_families() -> None:
    """Import every family module that exists; remember why any failed."""
    if _REGISTRY.families_loaded:
        return
    _REGISTRY.families_loaded = True
    for module_name in FAMILY_MODULES:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only "this family is not written yet" is silent; a broken dependency inside
            # an existing family is reported.
            if error.name == module_name:
                _REGISTRY.family_errors[module_name] = "not present"
            else:
                _REGISTRY.family_errors[module_name] = f"{type(error).__name__}: {error}"
        except Exception as error:  # a broken family must not hide the others
            _REGISTRY.family_errors[module_name] = f"{type(error).__name__}: {error}"


def registered() -> dict[str, ModelSpec]:
    """Every spec registered by the family modules that import, by name."""
    _load_families()
    return dict(sorted(_REGISTRY.specs.items()))


def family_errors() -> dict[str, str]:
    """Family modules that did not register anything, and why ("not present" or the error)."""
    _load_families()
    return dict(_REGISTRY.family_errors)


def get_spec(name: str) -> ModelSpec:
    """The spec registered under `name`; ValueError naming the known ones otherwise."""
    specs = registered()
    if name not in specs:
        missing = "; ".join(f"{m}: {why}" for m, why in family_errors().items())
        known = ", ".join(specs) or "none"
        detail = f" (families not loaded: {missing})" if missing else ""
        raise ValueError(f"unknown model name {name!r}; registered: {known}{detail}")
    return specs[name]


# --- where things live -------------------------------------------------------------------


def models_dir() -> Path:
    """The models directory: $EDIT3D_MODELS_DIR, else ~/.cache/edit3d/models."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "edit3d" / "models"


def model_path_env_var(name: str) -> str:
    """The environment variable that points `name` at a local copy."""
    return MODEL_PATH_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def cache_dir(name: str) -> Path:
    """The folder that holds `name`'s fetched copy inside the models directory."""
    return models_dir() / name


def cached_path(spec: ModelSpec) -> Path:
    """What `load_real` receives for a fetched copy: the repo folder or the file."""
    folder = cache_dir(spec.name)
    if isinstance(spec.source, UrlSource):
        return folder / spec.source.filename
    return folder


def is_cached(name: str) -> bool:
    """Whether a verified copy of `name` is in the models directory."""
    spec = get_spec(name)
    marker = _read_marker(cache_dir(name))
    return marker is not None and _marker_matches(spec, marker)


def local_override(name: str, local_path: str | os.PathLike[str] | None = None) -> Path | None:
    """The path the user pointed `name` at (argument, then environment), if any."""
    if local_path is not None:
        return Path(local_path).expanduser()
    configured = os.environ.get(model_path_env_var(name))
    return Path(configured).expanduser() if configured else None


def resolve_path(name: str, local_path: str | os.PathLike[str] | None = None) -> Path:
    """The local copy `load_real` will get, or ModelNotAvailable explaining how to get one."""
    spec = get_spec(name)
    override = local_override(name, local_path)
    if override is not None:
        return _checked_override(spec, override, local_path is not None)
    if is_cached(name):
        return cached_path(spec)
    raise ModelNotAvailable(_not_available_message(spec))


def _checked_override(spec: ModelSpec, path: Path, from_argument: bool) -> Path:
    origin = "local_path" if from_argument else model_path_env_var(spec.name)
    if not path.exists():
        raise ModelNotAvailable(
            f"{origin} points model {spec.name!r} at {path}, which does not exist.\n"
            + _remedies(spec)
        )
    source = spec.source
    if isinstance(source, UrlSource) and path.is_dir():
        inside = path / source.filename
        if not inside.is_file():
            raise ModelNotAvailable(
                f"{origin} points model {spec.name!r} at folder {path}, which has no "
                f"{source.filename}.\n" + _remedies(spec)
            )
        return inside
    return path


def _not_available_message(spec: ModelSpec) -> str:
    return (
        f"model {spec.name!r} ({spec.description}) has no local copy in "
        f"{cache_dir(spec.name)}.\n" + _remedies(spec)
    )


def _remedies(spec: ModelSpec) -> str:
    what = (
        f"a copy of {spec.source.filename}"
        if isinstance(spec.source, UrlSource)
        else f"a local snapshot of {spec.source.repo_id}"
    )
    return (
        "Provide it in one of two ways:\n"
        f"  1. on a machine with network access run `edit3d models fetch {spec.name}` "
        f"(it downloads to {models_dir()}; set {MODELS_DIR_ENV} to use another folder);\n"
        f"  2. point at {what}: set {model_path_env_var(spec.name)}=/path/to/it "
        "(or pass local_path=... to load_model)."
    )


# --- loading -----------------------------------------------------------------------------


def load_model(
    name: str,
    profile: Profile = "real",
    *,
    device: str = "cpu",
    seed: int = 0,
    local_path: str | os.PathLike[str] | None = None,
) -> object:
    """Load `name`: its published weights ("real") or its seeded random miniature ("tiny").

    A tiny model is a pipeline check, never a result: its outputs are noise by design.
    """
    if profile not in ("real", "tiny"):
        raise ValueError(f"profile must be 'real' or 'tiny', got {profile!r}")
    spec = get_spec(name)
    if profile == "tiny":
        return build_tiny(spec, seed=seed, device=device)
    return spec.load_real(resolve_path(name, local_path), device)


def build_tiny(spec: ModelSpec, *, seed: int, device: str) -> object:
    """Run the tiny builder under a forked, seeded torch RNG: same seed, same weights."""
    import torch  # only needed once a model is built

    devices = [] if not device.startswith("cuda") else None
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return spec.build_tiny(seed, device)


# --- fetching ----------------------------------------------------------------------------


def fetch(name: str, *, force: bool = False, on_progress: ByteProgress | None = None) -> Path:
    """Download `name` into the models directory, verify it, and mark it verified."""
    spec = get_spec(name)
    if is_cached(name) and not force:
        return cached_path(spec)
    folder = cache_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(spec.source, UrlSource):
        marker = _fetch_url(spec.source, folder, on_progress)
    else:
        # The snapshot is written in place: the old copy stops being trusted right away.
        (folder / VERIFIED_MARKER).unlink(missing_ok=True)
        marker = _fetch_hub(spec.source, folder)
    _write_json_atomic(folder / VERIFIED_MARKER, marker)
    return cached_path(spec)


def _fetch_url(source: UrlSource, folder: Path, on_progress: ByteProgress | None) -> dict:
    import urllib.request  # stdlib, but only needed here

    target = folder / source.filename
    handle, temp_name = tempfile.mkstemp(prefix=f".{source.filename}.", suffix=".part", dir=folder)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(source.url, timeout=60) as r:
            expected = _content_length(r) or source.size_bytes
            digest, size = _copy_hashing(r, out, expected, on_progress)
        _verify_download(source, digest, size)
        (folder / VERIFIED_MARKER).unlink(missing_ok=True)
        os.replace(temp, target)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise FetchError(f"downloading {source.url} failed: {error}") from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    stat = target.stat()
    return {"kind": "url", "url": source.url, "sha256": digest, "size": stat.st_size}


def _content_length(response: object) -> int | None:
    length = getattr(response, "headers", {}).get("Content-Length")
    return int(length) if length and str(length).isdigit() else None


def _copy_hashing(
    reader: object, out: object, expected: int | None, on_progress: ByteProgress | None
) -> tuple[str, int]:
    sha = hashlib.sha256()
    done = 0
    while chunk := reader.read(_CHUNK):  # type: ignore[attr-defined]
        sha.update(chunk)
        out.write(chunk)  # type: ignore[attr-defined]
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, expected)
    return sha.hexdigest(), done


def _verify_download(source: UrlSource, digest: str, size: int) -> None:
    if source.size_bytes is not None and size != source.size_bytes:
        raise ChecksumMismatch(
            f"{source.url}: got {size} bytes, expected {source.size_bytes}; file discarded"
        )
    if not source.digest_matches(digest):
        raise ChecksumMismatch(
            f"{source.url}: sha256 {digest} does not match the pinned {source.sha256}; "
            "file discarded"
        )


def _fetch_hub(source: HubSource, folder: Path) -> dict:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:  # pragma: no cover - huggingface_hub ships with the stack
        raise FetchError("fetching hub models needs the huggingface_hub package") from error
    expected = _hub_file_metadata(source)
    try:
        # Exactly the files chosen (and later verified) from the commit's listing.
        snapshot_download(
            source.repo_id,
            revision=source.revision,
            local_dir=folder,
            allow_patterns=sorted(expected),
        )
    except Exception as error:
        raise FetchError(f"downloading {source.repo_id}@{source.revision} failed: {error}") from (
            error
        )
    files = _verify_hub_files(source, folder, expected)
    return {
        "kind": "hub",
        "repo_id": source.repo_id,
        "revision": source.revision,
        "files": files,
    }


def _hub_file_metadata(source: HubSource) -> dict[str, tuple[int | None, str | None]]:
    """{path: (size, sha256 for LFS files)} of the pinned commit, from the hub's API."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(source.repo_id, revision=source.revision, files_metadata=True)
    except Exception as error:
        raise FetchError(f"reading {source.repo_id}@{source.revision} failed: {error}") from error
    metadata: dict[str, tuple[int | None, str | None]] = {}
    for sibling in info.siblings or ():
        if source.wants(sibling.rfilename):
            lfs = sibling.lfs
            metadata[sibling.rfilename] = (sibling.size, lfs.sha256 if lfs else None)
    if source.prefer_safetensors:
        metadata = {k: v for k, v in metadata.items() if k not in _pickle_duplicates(metadata)}
    if not metadata:
        raise FetchError(f"{source.repo_id}@{source.revision} lists no files to fetch")
    return metadata


def _pickle_duplicates(paths: Mapping[str, object]) -> set[str]:
    """Pickled weights (.bin and their index) in folders that also hold safetensors of the same
    precision: the same tensors twice, and the pickled copy is the unsafe one to load."""
    safetensor_groups = {
        (str(Path(p).parent), ".fp16." in Path(p).name)
        for p in paths
        if p.endswith((".safetensors", ".safetensors.index.json"))
    }
    return {
        p
        for p in paths
        if p.endswith((".bin", ".bin.index.json"))
        and (str(Path(p).parent), ".fp16." in Path(p).name) in safetensor_groups
    }


def _verify_hub_files(
    source: HubSource, folder: Path, expected: dict[str, tuple[int | None, str | None]]
) -> dict[str, int]:
    """Every expected file present with its size, and LFS files with their SHA-256."""
    sizes: dict[str, int] = {}
    for relative, (size, sha256) in sorted(expected.items()):
        path = folder / relative
        if not path.is_file():
            raise ChecksumMismatch(f"{source.repo_id}: {relative} missing after download")
        actual = path.stat().st_size
        if size is not None and actual != size:
            raise ChecksumMismatch(f"{source.repo_id}: {relative} has {actual} bytes, not {size}")
        if sha256 is not None and file_sha256(path) != sha256:
            raise ChecksumMismatch(f"{source.repo_id}: {relative} sha256 differs from the hub's")
        sizes[relative] = actual
    return sizes


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


# --- verified-copy markers ---------------------------------------------------------------


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / VERIFIED_MARKER).read_text())
    except (OSError, ValueError):
        return None


def _marker_matches(spec: ModelSpec, marker: Mapping) -> bool:
    source = spec.source
    folder = cache_dir(spec.name)
    if isinstance(source, UrlSource):
        target = folder / source.filename
        return (
            marker.get("kind") == "url"
            and source.digest_matches(str(marker.get("sha256", "")))
            and target.is_file()
            and target.stat().st_size == marker.get("size")
        )
    files = marker.get("files") or {}
    return (
        marker.get("kind") == "hub"
        and marker.get("repo_id") == source.repo_id
        and marker.get("revision") == source.revision
        and all(_has_size(folder / rel, size) for rel, size in files.items())
    )


def _has_size(path: Path, size: object) -> bool:
    return path.is_file() and path.stat().st_size == size


def _write_json_atomic(path: Path, payload: Mapping) -> None:
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        json.dump(payload, out, indent=2, sort_keys=True)
    os.replace(temp_name, path)


def _matches(relative_path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(relative_path, pattern) for pattern in patterns)


@contextlib.contextmanager
def temporary_registration(*specs: ModelSpec) -> Iterator[None]:
    """Register specs for the duration of a block (tests, plug-ins); restores what was there."""
    previous = {spec.name: _REGISTRY.specs.get(spec.name) for spec in specs}
    for spec in specs:
        register(spec, replace=True)
    try:
        yield
    finally:
        for name, old in previous.items():
            if old is None:
                unregister(name)
            else:
                _REGISTRY.specs[name] = old
