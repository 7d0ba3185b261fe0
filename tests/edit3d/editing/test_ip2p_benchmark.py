"""The GPU benchmark script's CPU smoke mode runs and its projection adds up."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "gpu_ip2p_nerfacto.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_ip2p_nerfacto", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_smoke_run_reports_consistent_numbers(bench, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = ["--smoke", "--edits", "1", "--iters", "2", "--turn-iters", "500", "--views", "7"]
    assert bench.main([*argv, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    ip2p, nerf, turn = result["ip2p"], result["nerfacto"], result["turn"]
    assert ip2p["diffusion_steps"] == 20
    assert ip2p["diffusion_size_hw"] == [48, 64]  # 369x497 render, long side 64
    assert ip2p["edit_seconds_mean"] > 0 and len(ip2p["edit_seconds"]) == 1
    assert nerf["iters_per_s"] > 0 and nerf["rays_per_iter"] == 256
    assert turn["edits"] == 50  # 500 iterations, one edit every 10
    assert turn["edit_minutes"] == pytest.approx(50 * ip2p["edit_seconds_mean"] / 60)
    field = result["edit3d_field"]
    if "error" in field:  # only a missing module may stop the project-loop measurement
        assert field["error"].startswith("edit3d.field not available")
        assert turn["basis"] == "nerfstudio model"
        iter_seconds = nerf["iter_seconds"]
        view_seconds = 369 * 497 / nerf["render_rays_per_s"]
    else:
        assert turn["basis"] == "edit3d.field"
        assert field["iters_per_s"] > 0 and field["render_size_hw"] == [48, 64]
        iter_seconds = field["iter_seconds"]
        view_seconds = field["paper_view_render_seconds"]
    assert turn["train_minutes"] == pytest.approx(500 * iter_seconds / 60)
    assert turn["prerender_minutes"] == pytest.approx(7 * view_seconds / 60)
    assert turn["edit3d_turn_minutes"] == pytest.approx(
        turn["train_minutes"] + turn["edit_minutes"] + turn["prerender_minutes"]
    )
    splat, splat_turn = result["splatfacto"], result["splatfacto_turn"]
    assert "error" not in splat, splat
    assert splat["iters_per_s"] > 0 and splat["gaussians"] > 0
    assert "torch rasterizer" in splat["field_settings"]
    assert splat_turn["train_minutes"] == pytest.approx(500 * splat["iter_seconds"] / 60)
    assert splat_turn["edit_minutes"] == pytest.approx(turn["edit_minutes"])
    assert splat_turn["edit3d_turn_minutes"] == pytest.approx(
        splat_turn["train_minutes"] + splat_turn["edit_minutes"] + splat_turn["prerender_minutes"]
    )
    preview = result["preview"]  # the edit preview of a new camera, through view_edit
    assert preview["preview_size_hw"] == [48, 64] and len(preview["preview_seconds"]) == 1
    assert preview["preview_seconds_mean"] > 0 and preview["preview_target_seconds"] == 3.0
    # Editor pool: the field's work (training + one render per edit) or the edits shared by
    # the editor GPUs, whichever is slower; never more than the synchronous turn.
    field_minutes = turn["train_minutes"] + 50 * view_seconds / 60
    pool = {int(gpus): minutes for gpus, minutes in turn["pool_turn_minutes"].items()}
    assert sorted(pool) == [1, 2, 4, 8]
    for gpus, minutes in pool.items():
        expected = max(field_minutes, turn["edit_minutes"] / gpus) + turn["prerender_minutes"]
        assert minutes == pytest.approx(expected)
    assert pool[8] <= pool[4] <= pool[2] <= pool[1]
    printed = capsys.readouterr().out
    assert "splatfacto turn" in printed
    assert "44.62 min" in printed
    assert "SMOKE RUN" in printed
    assert "edit preview of a new 64x48 camera" in printed and "target 3.0 s" in printed
    assert "editor pool" in printed and "8 GPUs" in printed


def test_full_size_request_without_cuda_refuses(bench, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the full run would start")
    assert bench.main([]) == 2
    assert "--smoke" in capsys.readouterr().err


def test_full_size_scenes_fit_the_sample_scene(bench) -> None:
    # The full-size splat timing writes the sample scene at the paper's image size.
    from edit3d.scene.sample import MAX_RESOLUTION

    assert max(bench.PAPER_IMAGE_SIZE) <= MAX_RESOLUTION
