"""build_addon.py's own checks, without Blender: lock verification, manifest, vendoring."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_build_addon():
    spec = importlib.util.spec_from_file_location("build_addon", ROOT / "build_addon.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_addon"] = module
    spec.loader.exec_module(module)
    return module


build_addon = _load_build_addon()


def _cache_with_locked_wheels(tmp_path: Path) -> Path:
    source = build_addon.DEFAULT_CACHE
    lock = build_addon.read_lock()
    if not all((source / name).is_file() for name in lock):
        pytest.skip("wheel cache not filled yet (python build_addon.py fills it)")
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in lock:
        shutil.copyfile(source / name, cache / name)
    return cache


def test_lock_pins_both_packages_for_every_platform() -> None:
    lock = build_addon.read_lock()
    assert all(len(digest) == 64 for digest in lock.values())
    for requirement in build_addon.PINNED:
        project, version = requirement.split("==")
        names = [n for n in lock if n.startswith(f"{project}-{version}-cp311-")]
        tags = " ".join(names)
        for tag in ("x86_64", "aarch64", "win_amd64", "macosx"):
            assert tag in tags, (requirement, tag)
        assert all(build_addon._wheel_matches(n, requirement) for n in names)


def test_offline_build_refuses_a_tampered_wheel(tmp_path: Path) -> None:
    cache = _cache_with_locked_wheels(tmp_path)
    victim = sorted(cache.iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match=f"sha256 mismatch for {victim.name}"):
        build_addon.collect_wheels(cache, offline=True, update_lock=False)


def test_offline_build_names_missing_wheels(tmp_path: Path) -> None:
    cache = _cache_with_locked_wheels(tmp_path)
    missing = sorted(cache.iterdir())[-1]
    missing.unlink()
    with pytest.raises(SystemExit, match=missing.name):
        build_addon.collect_wheels(cache, offline=True, update_lock=False)


def test_verified_wheels_come_back_sorted(tmp_path: Path) -> None:
    cache = _cache_with_locked_wheels(tmp_path)
    wheels = build_addon.collect_wheels(cache, offline=True, update_lock=False)
    assert [w.name for w in wheels] == sorted(build_addon.read_lock())


def test_staged_manifest_lists_wheels(tmp_path: Path) -> None:
    shutil.copyfile(
        ROOT / "blender_addon" / "blender_manifest.toml", tmp_path / "blender_manifest.toml"
    )
    build_addon.write_staged_manifest(tmp_path, ["a-1-cp311-cp311-win_amd64.whl"])
    text = (tmp_path / "blender_manifest.toml").read_text()
    assert 'wheels = [\n  "./wheels/a-1-cp311-cp311-win_amd64.whl",\n]' in text
    assert text.count("wheels =") == 1


def test_protocol_must_import_itself_relatively(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("from .codec import Codec\n")
    build_addon._check_protocol_is_relative(tmp_path)
    (tmp_path / "client.py").write_text("import zmq\nfrom protocol.codec import Codec\n")
    with pytest.raises(SystemExit, match="relative imports"):
        build_addon._check_protocol_is_relative(tmp_path)


def test_normalised_zip_is_sorted_with_fixed_metadata(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("zeta.py", "z")
        zf.writestr("blender_manifest.toml", "m")
        zf.writestr(zipfile.ZipInfo("alpha/beta.py", date_time=(2020, 5, 5, 1, 2, 3)), "a")
    build_addon.normalise_zip(path)
    first = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["blender_manifest.toml", "alpha/beta.py", "zeta.py"]
        assert {i.date_time for i in infos} == {build_addon.FIXED_DATE}
        assert zf.read("alpha/beta.py") == b"a"
    build_addon.normalise_zip(path)
    assert path.read_bytes() == first
