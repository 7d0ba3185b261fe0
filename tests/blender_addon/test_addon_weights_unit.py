"""The add-on's table of weights per job agrees with what edit3d loads (no Blender needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edit3d.editing.editors import IP2P_MODEL
from edit3d.models.sources import ALL_SOURCES
from edit3d.models.sr import GFPGAN_V14, REALESRGAN_X4PLUS
from edit3d.segmentation.adss import AdssSegmenter

ROOT = Path(__file__).resolve().parents[2]


def _load_weights_module():
    # blender_addon/__init__.py imports bpy; this module does not
    spec = importlib.util.spec_from_file_location(
        "addon_weights", ROOT / "blender_addon/weights.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


weights = _load_weights_module()


def test_turn_needs_match_the_editor_and_adss_loaders() -> None:
    adss = AdssSegmenter("real")
    assert weights.EDITOR_MODELS["ip2p"] == (IP2P_MODEL,)
    assert weights.segmentation_needs(has_queries=True, has_caption=False) == adss.needed_models()
    assert weights.segmentation_needs(has_queries=True, has_caption=True) == adss.needed_models(
        with_caption=False
    )
    assert weights.turn_needs(editor="pkg.mod:Factory", has_queries=False, has_caption=False) == ()


def test_turn_needs_lpips_exactly_where_the_preset_trains_with_it() -> None:
    from edit3d.field.objective import LPIPS_MODEL
    from edit3d.field.registry import DEFAULT_BACKEND, backend_names, get_backend

    assert weights.LPIPS_MODEL == LPIPS_MODEL and LPIPS_MODEL in ALL_SOURCES
    for backend in backend_names():
        for preset, config in get_backend(backend).presets.items():
            objective = config.turn_objective()
            trains_with_lpips = objective is not None and objective.uses_lpips
            for named in {backend, *([""] if backend == DEFAULT_BACKEND else [])}:
                needs = weights.turn_needs(editor="x:Y", has_queries=False, has_caption=False,
                                           preset=preset, backend=named)  # fmt: skip
                assert (needs == (LPIPS_MODEL,)) == trains_with_lpips, (backend, preset)


def test_refine_needs_match_the_fine_tune_loaders() -> None:
    assert weights.refine_needs(faces=False) == (REALESRGAN_X4PLUS,)
    assert weights.refine_needs(faces=True) == (REALESRGAN_X4PLUS, GFPGAN_V14, "yunet-face")
    every = {
        *weights.refine_needs(faces=True),
        *weights.turn_needs(editor="ip2p", has_queries=True, has_caption=False),
    }
    assert every <= set(ALL_SOURCES)


def test_missing_for_keeps_order_and_ignores_the_tiny_profile() -> None:
    needed = weights.turn_needs(editor="ip2p", has_queries=True, has_caption=False)
    lacking = ["sam-vit-h", "instruct-pix2pix", "clip-vit-l14"]
    assert weights.missing_for(needed, lacking, ["profile.real"]) == [
        "instruct-pix2pix",
        "sam-vit-h",
    ]
    assert weights.missing_for(needed, lacking, ["profile.tiny"]) == []
    assert weights.split_names(" a, b ,,c") == ["a", "b", "c"]
