"""Hub models load from a standard Hugging Face cache, offline, at their pinned commits.

The cache is built here the way `huggingface_hub` lays one out (blobs, snapshots, refs),
from repository folders in the published layout with tiny weights; `edit3d models list`
then runs as a user would run it, in a fresh process with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from hub_layouts import HUB_MODELS, populate_hub_cache, write_repo_folder

from edit3d.models import registry

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf-home")
    cache = root / "hub"
    for name in HUB_MODELS:
        source = registry.get_spec(name).source
        folder = write_repo_folder(name, root / "published" / name)
        populate_hub_cache(cache, source.repo_id, source.revision, folder)
    return cache


def _list_in_fresh_process(cache: Path) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDIT3D_MODEL")}
    env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "edit3d.cli", "models", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}


def test_models_list_reports_hub_models_in_the_standard_cache(hub_cache: Path) -> None:
    rows = _list_in_fresh_process(hub_cache)
    for name in HUB_MODELS:
        source = registry.get_spec(name).source
        snapshot = hub_cache / f"models--{source.repo_id.replace('/', '--')}" / "snapshots"
        assert rows[name][3:] == ["present", "hf-cache", str(snapshot / source.revision)], name
    assert rows["sam-vit-h"][3] == "missing"  # a release file is not in a hub cache


def test_hub_models_load_from_the_cache_without_network(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    for name in HUB_MODELS:
        monkeypatch.delenv(registry.model_path_env_var(name), raising=False)
    monkeypatch.delenv(registry.MODELS_DIR_ENV, raising=False)

    ip2p = registry.load_model("instruct-pix2pix")
    # The DDIM settings instruct-nerf2nerf uses (SD 1.4's), not DDIM's defaults, over the
    # repository's noise schedule.
    scheduler = ip2p.scheduler.config
    assert type(ip2p.scheduler).__name__ == "DDIMScheduler"
    assert (scheduler.clip_sample, scheduler.set_alpha_to_one, scheduler.steps_offset) == (
        False,
        False,
        1,
    )
    assert (scheduler.beta_start, scheduler.beta_end) == (0.00085, 0.012)
    assert scheduler.beta_schedule == "scaled_linear"
    latents = torch.zeros(1, 8, 8, 8)
    states = ip2p.text_encoder(ip2p.tokenizer(["turn it red"], return_tensors="pt").input_ids)[0]
    assert ip2p.unet(latents, 10, encoder_hidden_states=states).sample.shape == (1, 4, 8, 8)

    image = np.full((48, 48, 3), 0.5, dtype=np.float32)
    for name in ("clip-vit-l14", "clip-vit-b32"):
        clip = registry.load_model(name)
        assert clip.image_features([image]).shape == clip.text_features(["a chair"]).shape
    for name in ("blip-caption-large", "blip-itm-large-coco"):
        blip = registry.load_model(name)
        inputs = blip.processor(images=image, text="a chair", return_tensors="pt")
        # BLIP eval input: 384 x 384, so Grad-CAM maps live on a 24 x 24 patch grid.
        assert tuple(inputs["pixel_values"].shape[-2:]) == (384, 384)
        with torch.no_grad():
            patches = blip.model.vision_model(inputs["pixel_values"]).last_hidden_state
            assert patches.shape[1] == 1 + 24 * 24
            assert blip.model(**inputs) is not None
