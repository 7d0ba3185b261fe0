"""The package works vendored (relative imports only) and SPEC.md matches the code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import protocol
from protocol import MESSAGE_TYPES
from protocol._doc import SPEC_PATH, updated_spec

PACKAGE = Path(protocol.__file__).parent


def test_spec_lists_every_message_and_is_current() -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    assert updated_spec(text) == text, "SPEC.md is stale: run `python -m protocol._doc`"
    for type_name, cls in MESSAGE_TYPES.items():
        if cls.__module__.startswith("protocol."):
            assert f"#### `{type_name}`" in text


def test_package_imports_when_vendored_under_another_name(tmp_path: Path) -> None:
    addon = tmp_path / "some_addon"
    shutil.copytree(PACKAGE, addon / "protocol", ignore=shutil.ignore_patterns("__pycache__"))
    (addon / "__init__.py").write_text("")
    script = (
        "import sys\n"
        "import some_addon.protocol as p\n"
        "assert 'protocol' not in sys.modules, 'absolute import of protocol'\n"
        "banned = {'torch', 'bpy', 'edit3d', 'sidecar'} & set(sys.modules)\n"
        "assert not banned, banned\n"
        "c = p.Codec(b'k' * 32)\n"
        "m = p.Codec(b'k' * 32).unpack(c.pack(p.Heartbeat())).message\n"
        "print(type(m).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Heartbeat"
