"""The catalogue names the built-in backends and their presets without torch, and says what
the registry holds once the backends are loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edit3d.field import catalogue

REPO = Path(__file__).resolve().parents[3]


def test_names_and_presets_need_no_torch() -> None:
    probe = (
        "import sys\n"
        "from edit3d.field import DEFAULT_PRESET, FieldConfig\n"
        "from edit3d.field.catalogue import builtin_backend_names, builtin_presets\n"
        "for name in builtin_backend_names():\n"
        "    builtin_presets(name)[DEFAULT_PRESET].turn_objective()\n"
        "FieldConfig.from_dict(FieldConfig().to_dict())\n"
        "print(sorted(m for m in ('torch', 'nerfstudio') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_registry_holds_what_the_catalogue_names() -> None:
    from edit3d.field import DEFAULT_BACKEND, backend_names, get_backend

    assert set(catalogue.builtin_backend_names()) <= set(backend_names())
    assert DEFAULT_BACKEND in catalogue.builtin_backend_names()
    for name in catalogue.builtin_backend_names():
        assert get_backend(name).presets is catalogue.builtin_presets(name)
        assert catalogue.DEFAULT_PRESET in catalogue.preset_names(name)


def test_an_unknown_backend_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"backend must be one of \['nerfacto', 'splatfacto'\], "
                       r"got 'nope'"):  # fmt: skip
        catalogue.preset_names("nope")
