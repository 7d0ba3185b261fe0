"""Drive a real headless Blender (bpy 4.5 in .venv-blender) from the main test process.

Every Blender step runs in its own subprocess of .venv-blender/bin/python (that venv has
bpy and numpy only: the add-on must load pyzmq/msgpack from the wheels it bundles), with
BLENDER_USER_RESOURCES pointing at a per-session temp folder and a hard timeout (bpy 4.5
hangs at exit if a timer is left registered, so a hang is a failure, not a stall).

The extension zip is built once per test session with build_addon.py and installed once
with `package_install_files`; later subprocesses re-enable it with addon_utils.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLENDER_PYTHON = ROOT / ".venv-blender" / "bin" / "python"
SCENARIOS = Path(__file__).resolve().parent / "bpy_scenarios.py"
ADDON_MODULE = "bl_ext.user_default.edit3d"
DEFAULT_TIMEOUT_S = 120.0


@dataclass
class BlenderRun:
    """Outcome of one bpy subprocess."""

    result: dict[str, Any]
    stdout: str
    stderr: str
    seconds: float


_STATE: dict[str, Any] = {}


def require_blender() -> None:
    if not BLENDER_PYTHON.exists():
        pytest.skip(f"{BLENDER_PYTHON} missing: run bash scripts/setup_env.sh")


def build_zip(out_dir: Path) -> Path:
    """Build the extension once per session (wheels come from .cache/wheels or PyPI)."""
    if "zip" not in _STATE:
        require_blender()
        cmd = [sys.executable, str(ROOT / "build_addon.py"), "--out-dir", str(out_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            pytest.fail(f"build_addon.py failed:\n{proc.stdout}\n{proc.stderr}")
        zips = sorted(out_dir.glob("edit3d-*.zip"))
        assert len(zips) == 1, f"expected one zip, got {zips}"
        _STATE["zip"] = zips[0]
        _STATE["build_stdout"] = proc.stdout
    return _STATE["zip"]


def run_bpy(
    scenario: str,
    home: Path,
    args: dict[str, Any] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> BlenderRun:
    """Run one scenario of bpy_scenarios.py in a fresh bpy process; returns its JSON result."""
    require_blender()
    home.mkdir(parents=True, exist_ok=True)
    io_dir = home / "io"
    io_dir.mkdir(exist_ok=True)
    stamp = f"{scenario}-{time.monotonic_ns()}"
    args_path, result_path = io_dir / f"{stamp}.args.json", io_dir / f"{stamp}.result.json"
    args_path.write_text(json.dumps(args or {}))
    full_env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(home / "user"),
        "OMP_NUM_THREADS": "1",
        "PYTHONNOUSERSITE": "1",
        **(env or {}),
    }
    full_env.pop("PYTHONPATH", None)  # the bpy venv must not see the sidecar's packages
    cmd = [str(BLENDER_PYTHON), str(SCENARIOS), scenario, str(args_path), str(result_path)]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=full_env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bpy scenario {scenario!r} did not finish within {timeout_s} s: {exc}")
    seconds = time.monotonic() - start
    if proc.returncode != 0 or not result_path.exists():
        pytest.fail(
            f"bpy scenario {scenario!r} failed (rc {proc.returncode}):\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    result = json.loads(result_path.read_text())
    return BlenderRun(result, proc.stdout, proc.stderr, seconds)


def installed_home(tmp_root: Path) -> Path:
    """A Blender user folder with the built extension installed (once per session)."""
    if "home" not in _STATE:
        zip_path = build_zip(tmp_root / "dist")
        home = tmp_root / "blender-home"
        run = run_bpy("install", home, {"zip": str(zip_path)})
        _STATE["home"] = home
        _STATE["install"] = run
    return _STATE["home"]


def install_result() -> BlenderRun:
    return _STATE["install"]
