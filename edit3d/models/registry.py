"""One place that knows every network: where its real weights come from, and a tiny twin.

Each family module (`FAMILY_MODULES`) calls `register(ModelSpec(...))` at import. A spec
names a real source — a Hugging Face repository pinned to a commit (`HubSource`) or a
release file pinned by its SHA-256 (`UrlSource`) — a `load_real(path, device)` that turns
the local copy into the object the rest of `edit3d` uses, and a `build_tiny(seed, device)`
that builds a seeded, randomly initialised miniature with the same Python API, offline.

Where real weights are looked for, first match wins (`locate` says which, never downloading):

1. the `local_path` argument of `load_model`;
2. the environment variable `EDIT3D_MODEL_PATH_<NAME>` (name upper-cased, every
   non-alphanumeric character replaced by `_`, e.g. `EDIT3D_MODEL_PATH_GFPGAN_V1_4`);
3. hub models: a copied repository folder `$EDIT3D_MODELS_DIR/<name>` when that variable is
   set, else the standard Hugging Face cache at the pinned commit (`HF_HOME`, `HF_HUB_CACHE`
   and `HF_HUB_OFFLINE` apply as for any hub library);
4. release files: `<models directory>/<name>/<file>` (`$EDIT3D_MODELS_DIR`, else the
   platform's user cache folder, which honours `XDG_CACHE_HOME`).

`edit3d models fetch NAME` fills 3 or 4: hub files go through `huggingface_hub` into its
cache, release files are streamed to a `.part` file (continued where a download stopped)
and renamed to their final name only once size and SHA-256 match. Local overrides are
trusted as given (they may be a compatible fine-tune).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

FAMILY_MODULES: tuple[str, ...] = (
    "edit3d.models.ip2p",
    "edit3d.models.blip",
    "edit3d.models.sam",
    "edit3d.models.sr",
    "edit3d.models.clip",
    "edit3d.models.face_detector",
    "edit3d.models.lpips",
)
"""Modules that register model families, imported on first use of the registry."""

MODELS_DIR_ENV = "EDIT3D_MODELS_DIR"
MODEL_PATH_ENV_PREFIX = "EDIT3D_MODEL_PATH_"
_CHUNK = 1 << 20

Profile = Literal["real", "tiny"]
ByteProgress = Callable[[int, int | None], None]
"""Download progress: (bytes done, bytes expected or None)."""


class ModelNotAvailable(RuntimeError):
    """Real weights were asked for and no local copy exists."""

    def __init__(self, message: str, one_line: str = "") -> None:
        super().__init__(message)
        self.one_line = one_line or message.splitlines()[0]
        """The problem and the fix in one line, for the command line."""


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
    required_files: tuple[str, ...] = ()
    """Globs that must each match a file of a local copy for it to count as present: what
    the loader reads, so a partial copy is reported missing rather than failing to load."""

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
    filename: str = ""
    """Name the file is stored under in the models directory ("": the URL's last path
    component, the publisher's own name)."""
    size_bytes: int | None = None
    """Exact size in bytes when known; checked after download."""
    license: str = ""
    """Licence of the published weights, as stated by the publisher."""

    def __post_init__(self) -> None:
        if not (8 <= len(self.sha256) <= 64) or not _HEX.match(self.sha256):
            raise ValueError(f"sha256 must be 8-64 lower-case hex digits, got {self.sha256!r}")
        if not self.filename:
            published = PurePosixPath(unquote(urlsplit(self.url).path)).name
            object.__setattr__(self, "filename", published)
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

Origin = Literal["argument", "environment", "models-dir", "hf-cache"]


@dataclass(frozen=True)
class Location:
    """Where `load_model` reads a model's real weights from, and whether they are there."""

    origin: Origin
    """"argument" (`local_path`), "environment" (`EDIT3D_MODEL_PATH_<NAME>`), "models-dir"
    (release files, and copied hub folders under `$EDIT3D_MODELS_DIR`) or "hf-cache" (the
    standard Hugging Face cache at the pinned commit)."""
    path: Path
    """What `load_real` receives: the file, or the repository folder."""
    present: bool
    """Whether a usable copy is there now."""


def models_dir() -> Path:
    """$EDIT3D_MODELS_DIR, else the platform's user cache folder (on Linux
    `$XDG_CACHE_HOME/edit3d/models`, default `~/.cache/edit3d/models`)."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs  # resolves XDG_CACHE_HOME, ~/Library/Caches, %LOCALAPPDATA%

    return platformdirs.user_cache_path("edit3d", appauthor=False) / "models"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache that `huggingface_hub` uses (HF_HUB_CACHE, HF_HOME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def model_path_env_var(name: str) -> str:
    """The environment variable that points `name` at a local copy."""
    return MODEL_PATH_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def cache_dir(name: str) -> Path:
    """`name`'s folder inside the models directory (release files; copied hub folders)."""
    return models_dir() / name


def local_override(name: str, local_path: str | os.PathLike[str] | None = None) -> Path | None:
    """The path the user pointed `name` at (argument, then environment), if any."""
    if local_path is not None:
        return Path(local_path).expanduser()
    configured = os.environ.get(model_path_env_var(name))
    return Path(configured).expanduser() if configured else None


def locate(name: str, local_path: str | os.PathLike[str] | None = None) -> Location:
    """Where `name`'s real weights would load from; looks, never downloads."""
    return locate_source(name, get_spec(name).source, local_path)


def locate_source(
    name: str, source: Source, local_path: str | os.PathLike[str] | None = None
) -> Location:
    """`locate` for a name and its pinned source, without importing the family modules."""
    override = local_override(name, local_path)
    if override is not None:
        origin: Origin = "argument" if local_path is not None else "environment"
        return Location(origin, *_override_path(source, override))
    return _standard_location(name, source)


def standard_location(spec: ModelSpec) -> Location:
    """The copy `edit3d models fetch` manages (overrides aside)."""
    return _standard_location(spec.name, spec.source)


def _standard_location(name: str, source: Source) -> Location:
    if isinstance(source, UrlSource):
        target = cache_dir(name) / source.filename
        return Location("models-dir", target, _is_complete_file(source, target))
    copied = cache_dir(name)
    if os.environ.get(MODELS_DIR_ENV) and copied.is_dir():
        return Location("models-dir", copied, _has_required_files(source, copied))
    snapshot = _hub_snapshot(source)
    if snapshot is not None:
        return Location("hf-cache", snapshot, True)
    return Location("hf-cache", _snapshot_folder(source), False)


def is_present(name: str) -> bool:
    """Whether `load_model(name)` would find real weights."""
    return locate(name).present


def resolve_path(name: str, local_path: str | os.PathLike[str] | None = None) -> Path:
    """The local copy `load_real` will get, or ModelNotAvailable explaining how to get one."""
    location = locate(name, local_path)
    if location.present:
        return location.path
    spec = get_spec(name)
    fix = (
        f"run `edit3d models fetch {name}` on a machine with network access, or set "
        f"{model_path_env_var(name)}=/path/to/it"
    )
    if location.origin in ("argument", "environment"):
        origin = "local_path" if location.origin == "argument" else model_path_env_var(name)
        problem = f"{origin} points model {name!r} at {location.path}, which does not exist"
    else:
        problem = f"model {name!r} ({spec.description}) is not in {location.path}"
    raise ModelNotAvailable(f"{problem}.\n" + _remedies(spec), one_line=f"{problem}; {fix}")


def _override_path(source: Source, path: Path) -> tuple[Path, bool]:
    if isinstance(source, UrlSource) and path.is_dir():
        inside = path / source.filename
        return inside, inside.is_file()
    return path, path.exists()


def _is_complete_file(source: UrlSource, path: Path) -> bool:
    # Downloads land under their final name only after the checksum passed; the size check
    # catches a file truncated while being copied by hand.
    if not path.is_file():
        return False
    return source.size_bytes is None or path.stat().st_size == source.size_bytes


def _has_required_files(source: HubSource, folder: Path) -> bool:
    if not folder.is_dir():
        return False
    files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    return all(any(fnmatch.fnmatch(f, glob) for f in files) for glob in source.required_files)


def _snapshot_folder(source: HubSource) -> Path:
    """Where huggingface_hub keeps the pinned commit's files in its cache."""
    repo_folder = "models--" + source.repo_id.replace("/", "--")
    return hub_cache_dir() / repo_folder / "snapshots" / source.revision


def _hub_snapshot(source: HubSource) -> Path | None:
    """The cached snapshot of the pinned commit, if complete; never touches the network."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            source.repo_id,
            revision=source.revision,
            allow_patterns=list(source.allow_patterns) or None,
            ignore_patterns=list(source.ignore_patterns) or None,
            local_files_only=True,
        )
    except Exception:  # LocalEntryNotFoundError, IncompleteSnapshotError: not (all) there
        return None
    path = Path(folder)
    return path if _has_required_files(source, path) else None


def _remedies(spec: ModelSpec) -> str:
    if isinstance(spec.source, UrlSource):
        what = f"a copy of {spec.source.filename}"
        where = f"it downloads to {cache_dir(spec.name)}; {MODELS_DIR_ENV} chooses another folder"
    else:
        what = f"a local snapshot of {spec.source.repo_id}"
        where = (
            f"it downloads {spec.source.repo_id} into the Hugging Face cache {hub_cache_dir()}; "
            "HF_HOME/HF_HUB_CACHE choose another"
        )
    return (
        "Provide it in one of two ways:\n"
        f"  1. on a machine with network access run `edit3d models fetch {spec.name}` ({where});\n"
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
    """Download `name` to its standard place (models directory or HF cache) and verify it."""
    spec = get_spec(name)
    location = standard_location(spec)
    if location.present and not force:
        return location.path
    if isinstance(spec.source, UrlSource):
        return _fetch_url(spec.source, cache_dir(name), on_progress)
    return _fetch_hub(spec.source, force)


def _fetch_url(source: UrlSource, folder: Path, on_progress: ByteProgress | None) -> Path:
    """Stream into `<filename>.part`, continuing an earlier partial download where the server
    allows (HTTP Range); rename to the final name only after size and SHA-256 match."""
    folder.mkdir(parents=True, exist_ok=True)
    target, partial = folder / source.filename, folder / f"{source.filename}.part"
    done = partial.stat().st_size if partial.is_file() else 0
    if source.size_bytes is not None and done > source.size_bytes:
        partial.unlink()
        done = 0
    if source.size_bytes is None or done < source.size_bytes:
        _download_into(source, partial, done, on_progress)
    digest, size = file_sha256(partial), partial.stat().st_size
    try:
        _verify_download(source, digest, size)
    except ChecksumMismatch:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target


def _download_into(
    source: UrlSource, partial: Path, done: int, on_progress: ByteProgress | None
) -> None:
    import urllib.request  # stdlib, but only needed here

    headers = {"Range": f"bytes={done}-"} if done else {}
    request = urllib.request.Request(source.url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            # 206: the server continues from `done`; anything else sends the whole file.
            resumed = done > 0 and getattr(response, "status", None) == 206
            offset = done if resumed else 0
            length = _content_length(response)
            end = offset + length if length is not None else source.size_bytes
            with open(partial, "ab" if resumed else "wb") as out:
                _copy(response, out, offset, source.size_bytes, on_progress)
    except OSError as error:
        raise _interrupted(source, partial, str(error)) from error
    if end is not None and partial.stat().st_size < end:  # the connection ended early
        raise _interrupted(source, partial, "the connection closed before the end")


def _interrupted(source: UrlSource, partial: Path, why: str) -> FetchError:
    kept = partial.stat().st_size if partial.is_file() else 0
    return FetchError(
        f"downloading {source.url} stopped after {kept} bytes ({why}); "
        "run the same command again to continue from there"
    )


def _content_length(response: object) -> int | None:
    length = getattr(response, "headers", {}).get("Content-Length")
    return int(length) if length and str(length).isdigit() else None


def _copy(
    reader: object, out: object, done: int, expected: int | None, on_progress: ByteProgress | None
) -> None:
    while chunk := reader.read(_CHUNK):  # type: ignore[attr-defined]
        out.write(chunk)  # type: ignore[attr-defined]
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, expected)


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


def _fetch_hub(source: HubSource, force: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:  # pragma: no cover - huggingface_hub ships with the stack
        raise FetchError("fetching hub models needs the huggingface_hub package") from error
    expected = _hub_file_metadata(source)
    try:
        # Exactly the files chosen (and then verified) from the commit's listing, into the
        # standard cache, where other tools find them too.
        folder = snapshot_download(
            source.repo_id,
            revision=source.revision,
            allow_patterns=sorted(expected),
            force_download=force,
        )
    except Exception as error:
        raise FetchError(f"downloading {source.repo_id}@{source.revision} failed: {error}") from (
            error
        )
    _verify_hub_files(source, Path(folder), expected)
    return Path(folder)


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
) -> None:
    """Every expected file present with its size, and LFS files with their SHA-256; a file
    that fails is removed from the snapshot, so the copy does not count as present."""
    for relative, (size, sha256) in sorted(expected.items()):
        path = folder / relative
        if not path.is_file():
            raise ChecksumMismatch(f"{source.repo_id}: {relative} missing after download")
        actual = path.stat().st_size
        problem = None
        if size is not None and actual != size:
            problem = f"has {actual} bytes, not {size}"
        elif sha256 is not None and file_sha256(path) != sha256:
            problem = "sha256 differs from the hub's"
        if problem:
            path.resolve().unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{source.repo_id}: {relative} {problem}; removed")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


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
