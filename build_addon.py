#!/usr/bin/env python3
"""Build the Edit3D Blender extension zip(s).

Steps:
1. Stage blender_addon/ and protocol/ (vendored as <addon>/protocol) in a clean folder.
2. Fetch the pinned pyzmq and msgpack wheels for every supported platform into a cache
   (`pip download`, reused between builds) and check each against blender_addon/wheels.lock.
3. List the wheels in the staged manifest.
4. Validate and build with Blender's own extension tool (blender_ext.py from the bpy
   package; no Blender binary needed), then rewrite each archive with sorted entries and
   fixed dates/modes so it is byte-identical for identical inputs, and validate it again.

    python build_addon.py [--out-dir dist] [--split-platforms] [--offline] [--update-lock]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON_SRC = ROOT / "blender_addon"
PROTOCOL_SRC = ROOT / "protocol"
LOCK_FILE = ADDON_SRC / "wheels.lock"
DEFAULT_CACHE = ROOT / ".cache" / "wheels"
DEFAULT_OUT = ROOT / "dist"

PINNED = ("pyzmq==27.3.0", "msgpack==1.2.4")
"""The wire's packages, pinned to what the sidecar environment runs."""
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_28_aarch64",
    "win_amd64",
    "macosx_11_0_arm64",
    "macosx_11_0_x86_64",
)
"""pip platform tags of the Blender builds the extension supports (CPython 3.11)."""
FIXED_DATE = (2024, 1, 1, 0, 0, 0)
"""The date of every archive entry."""
SKIP_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".zip")


@dataclass(frozen=True)
class BuildResult:
    """What one build produced."""

    zips: tuple[Path, ...]
    """The extension archives written."""
    wheels: tuple[str, ...]
    """Wheel file names bundled (all platforms)."""
    files: tuple[str, ...]
    """Package-relative paths of the add-on's own files in each archive."""


# --- Blender's extension tool ------------------------------------------------------------


def find_blender_ext(explicit: str | None = None) -> Path:
    """blender_ext.py from an installed bpy package (or an explicit path)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SystemExit(f"--blender-ext {explicit!r} is not a file")
        return path
    pattern = "lib/python3*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
    hits = sorted(glob.glob(str(ROOT / ".venv-blender" / pattern)))
    if not hits:
        raise SystemExit(
            "blender_ext.py not found: create .venv-blender (bash scripts/setup_env.sh) or "
            "pass --blender-ext PATH"
        )
    return Path(hits[-1])


def blender_python() -> str:
    """An interpreter for blender_ext.py (it needs Python >= 3.11 and nothing else)."""
    venv_python = ROOT / ".venv-blender" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def run_blender_ext(tool: Path, *args: str) -> str:
    cmd = [blender_python(), str(tool), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


# --- wheels ------------------------------------------------------------------------------


def read_lock(path: Path = LOCK_FILE) -> dict[str, str]:
    """wheel file name → sha256, from `<sha256>  <file name>` lines (sha256sum format)."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, name = line.split(maxsplit=1)
        entries[name.strip()] = digest
    return entries


def write_lock(entries: dict[str, str], path: Path = LOCK_FILE) -> None:
    header = (
        "# Wheels bundled into the Edit3D extension (pins in build_addon.py: "
        + ", ".join(PINNED)
        + ").\n# <sha256>  <file name>; regenerate with `python build_addon.py --update-lock`.\n"
    )
    body = "".join(f"{entries[name]}  {name}\n" for name in sorted(entries))
    path.write_text(header + body)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _wheel_matches(name: str, requirement: str) -> bool:
    project, version = requirement.split("==")
    return name.startswith(f"{project}-{version}-")


def download_wheels(cache: Path, platform: str) -> None:
    """pip download the pinned wheels for one platform into cache (pip skips present files)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--no-deps", "--python-version", "3.11",
        "--implementation", "cp", "--abi", "cp311", "--platform", platform,
        "--dest", str(cache), *PINNED,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"wheel download for {platform} failed:\n{proc.stderr}")


def collect_wheels(cache: Path, *, offline: bool, update_lock: bool) -> list[Path]:
    """The locked wheels, verified, from the cache (downloading missing ones unless offline)."""
    cache.mkdir(parents=True, exist_ok=True)
    lock = {} if update_lock else read_lock()
    missing = [name for name in lock if not (cache / name).is_file()]
    if update_lock or missing:
        if offline:
            raise SystemExit(f"--offline but the wheel cache {cache} lacks: {', '.join(missing)}")
        for platform in PLATFORMS:
            download_wheels(cache, platform)
    if update_lock:
        names = [
            p.name for p in cache.glob("*.whl") if any(_wheel_matches(p.name, r) for r in PINNED)
        ]
        lock = {name: sha256_of(cache / name) for name in names}
        write_lock(lock)
    wheels = []
    for name in sorted(lock):
        path = cache / name
        if not path.is_file():
            raise SystemExit(f"wheel {name} from {LOCK_FILE.name} was not downloaded")
        actual = sha256_of(path)
        if actual != lock[name]:
            raise SystemExit(f"sha256 mismatch for {name}: lock {lock[name]}, file {actual}")
        wheels.append(path)
    return wheels


# --- staging -----------------------------------------------------------------------------


def _copy_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in SKIP_NAMES or part.startswith(".") for part in rel.parts):
            continue
        if path.is_dir() or path.suffix in SKIP_SUFFIXES or path.name == LOCK_FILE.name:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _check_protocol_is_relative(protocol_dir: Path) -> None:
    """protocol/ must import itself relatively, or the vendored copy would import the wrong one."""
    absolute = re.compile(r"^\s*(from|import)\s+protocol(\.|\s|$)", re.MULTILINE)
    for path in sorted(protocol_dir.rglob("*.py")):
        if absolute.search(path.read_text(encoding="utf-8")):
            raise SystemExit(f"{path}: protocol/ must use relative imports to be vendored")


def _toml_list(items: list[str]) -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f'  "{item}",\n' for item in items) + "]"


def write_staged_manifest(stage: Path, wheel_names: list[str]) -> None:
    """Fill the staged manifest's `wheels = [...]` with the bundled wheels."""
    manifest = stage / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    wheels_toml = "wheels = " + _toml_list([f"./wheels/{name}" for name in wheel_names])
    text, count = re.subn(r"(?m)^wheels\s*=\s*\[[^\]]*\]", lambda _m: wheels_toml, text)
    if count != 1:
        raise SystemExit("blender_manifest.toml must contain exactly one `wheels = [...]` line")
    manifest.write_text(text, encoding="utf-8")


def normalise_zip(path: Path) -> None:
    """Rewrite an archive with sorted entries (manifest first), fixed dates and modes.

    Blender's tool adds files in directory-scan order, which differs between file systems;
    its explicit `[build] paths` list would bundle every wheel twice. Content and compression
    of each entry are kept.
    """
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    manifest_first = sorted(
        entries, key=lambda e: (e[0].filename != "blender_manifest.toml", e[0].filename)
    )
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as dst:
        for info, data in manifest_first:
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE)
            fixed.compress_type = info.compress_type
            fixed.create_system = 3
            fixed.external_attr = (0o644 | 0o100000) << 16
            dst.writestr(fixed, data, compresslevel=9)
    os.replace(tmp, path)


def stage_package(stage: Path, wheels: list[Path]) -> list[str]:
    """Copy the add-on, the vendored protocol and the wheels into stage; return file list."""
    _copy_tree(ADDON_SRC, stage)
    if not (PROTOCOL_SRC / "__init__.py").is_file():
        raise SystemExit(f"{PROTOCOL_SRC} is not a package (missing __init__.py)")
    _check_protocol_is_relative(PROTOCOL_SRC)
    _copy_tree(PROTOCOL_SRC, stage / "protocol")
    (stage / "wheels").mkdir()
    for wheel in wheels:
        shutil.copyfile(wheel, stage / "wheels" / wheel.name)
    files = sorted(
        path.relative_to(stage).as_posix()
        for path in stage.rglob("*")
        if path.is_file() and path.name != "blender_manifest.toml" and path.parent.name != "wheels"
    )
    write_staged_manifest(stage, [w.name for w in wheels])
    return files


# --- main --------------------------------------------------------------------------------


def build(
    out_dir: Path,
    *,
    split_platforms: bool = False,
    offline: bool = False,
    update_lock: bool = False,
    cache: Path = DEFAULT_CACHE,
    blender_ext: str | None = None,
    keep_stage: Path | None = None,
) -> BuildResult:
    """Stage, validate and build; returns the zips written."""
    tool = find_blender_ext(blender_ext)
    wheels = collect_wheels(cache, offline=offline, update_lock=update_lock)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edit3d-addon-") as tmp:
        stage = keep_stage if keep_stage is not None else Path(tmp) / "edit3d"
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        files = stage_package(stage, wheels)
        run_blender_ext(tool, "validate", str(stage))
        args = ["build", "--source-dir", str(stage), "--output-dir", str(out_dir)]
        if split_platforms:
            args.append("--split-platforms")
        run_blender_ext(tool, *args)
        zips = _built_zips(out_dir, split_platforms)
        for path in zips:
            normalise_zip(path)
            run_blender_ext(tool, "validate", str(path))
    return BuildResult(tuple(zips), tuple(w.name for w in wheels), tuple(files))


def _built_zips(out_dir: Path, split: bool) -> list[Path]:
    version = _manifest_version()
    if split:
        return sorted(out_dir.glob(f"edit3d-{version}-*.zip"))
    return [out_dir / f"edit3d-{version}.zip"]


def _manifest_version() -> str:
    text = (ADDON_SRC / "blender_manifest.toml").read_text(encoding="utf-8")
    match = re.search(r'(?m)^version\s*=\s*"([^"]+)"', text)
    if match is None:
        raise SystemExit("blender_manifest.toml has no version")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="where zips go")
    parser.add_argument("--split-platforms", action="store_true", help="one zip per platform")
    parser.add_argument("--offline", action="store_true", help="use only the wheel cache")
    parser.add_argument("--update-lock", action="store_true", help="re-pin wheels.lock hashes")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="wheel cache folder")
    parser.add_argument("--blender-ext", help="path to Blender's blender_ext.py")
    parser.add_argument("--stage-dir", type=Path, help="keep the staged package here")
    args = parser.parse_args(argv)
    result = build(
        args.out_dir,
        split_platforms=args.split_platforms,
        offline=args.offline,
        update_lock=args.update_lock,
        cache=args.cache,
        blender_ext=args.blender_ext,
        keep_stage=args.stage_dir,
    )
    for path in result.zips:
        print(f"built {path} ({path.stat().st_size} bytes, sha256 {sha256_of(path)})")
    print(f"bundled wheels: {', '.join(result.wheels)}")
    print(f"add-on files: {len(result.files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
