"""Dependencies point one way: blender_addon -> protocol <- sidecar -> edit3d."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"edit3d", "sidecar", "protocol", "blender_addon"}
ALLOWED = {
    "protocol": set(),
    "edit3d": set(),
    "sidecar": {"protocol", "edit3d"},
    "blender_addon": {"protocol"},
}
# Packages that must stay importable inside Blender's Python (no torch there).
FORBIDDEN_THIRD_PARTY = {
    "protocol": {"torch", "bpy", "nerfstudio", "diffusers", "transformers"},
    "blender_addon": {"torch", "nerfstudio", "diffusers", "transformers"},
}


def imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_architecture_allows(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        names = imported_top_level_names(path)
        wrong = (names & FIRST_PARTY) - ALLOWED[package] - {package}
        wrong |= names & FORBIDDEN_THIRD_PARTY.get(package, set())
        if wrong:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(wrong)}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import sidecar.jobs\nfrom edit3d.field import x\nfrom . import local\n")
    assert imported_top_level_names(sample) == {"sidecar", "edit3d"}


def test_only_the_field_package_names_a_field_backend() -> None:
    """Everything else goes through `RadianceField` and the backend registry."""
    from edit3d.field.registry import backend_names, get_backend

    modules = {
        "edit3d.field.nerfacto_field", "edit3d.field.model", "edit3d.field.nerfstudio_run",
        "edit3d.field.splatfacto_field", "edit3d.field.splat_raster", "edit3d.field.splat_presets",
    }  # fmt: skip
    concrete = {
        "NerfactoField", "OfflineNerfactoModel", "SplatfactoField", "OfflineSplatfactoModel",
        "SplatConfig", *modules,
    }  # fmt: skip
    assert backend_names() == ["nerfacto", "splatfacto"]
    assert [get_backend(name).name for name in backend_names()] == ["nerfacto", "splatfacto"]
    offenders = []
    for package in ("edit3d", "sidecar", "benchmarks", "scripts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "edit3d" / "field"):
                continue
            text = path.read_text()
            named = sorted(name for name in concrete if name in text)
            if named:
                offenders.append(f"{path.relative_to(ROOT)} names {named}")
    assert not offenders, "\n".join(offenders)


def test_ray_is_optional_and_only_the_editor_pool_imports_it_lazily() -> None:
    """Ray (the `ray` extra) is imported by edit3d/editing/ray_pool.py alone and only inside
    functions, so nothing else needs it installed; the Blender zip bundles none of it."""
    import build_addon

    importers = [
        path.relative_to(ROOT).as_posix()
        for package in sorted(ALLOWED)
        for path in sorted((ROOT / package).rglob("*.py"))
        if "ray" in imported_top_level_names(path)
    ]
    assert importers == ["edit3d/editing/ray_pool.py"]
    module = ast.parse((ROOT / importers[0]).read_text())
    top_level = [node for node in module.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert not any("ray" in imported_names(node) for node in top_level)
    assert not any(pin.lower().startswith("ray") for pin in build_addon.PINNED)


def imported_names(node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    return {node.module.split(".")[0]} if node.level == 0 and node.module else set()
