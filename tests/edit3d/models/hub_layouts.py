"""Write hub models' repository folders as their publishers lay them out, with tiny weights.

`write_repo_folder(name, folder)` saves the family's tiny twin with `save_pretrained`, the
same writer that produced the published folders: the same file names, subfolders and
config keys, random miniature weights. `populate_hub_cache` files such folders into a
Hugging Face cache exactly as `huggingface_hub` does (blobs, a snapshot per commit, refs).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edit3d.models import registry

HUB_MODELS = (
    "instruct-pix2pix",
    "blip-caption-large",
    "blip-itm-large-coco",
    "clip-vit-l14",
    "clip-vit-b32",
)


def write_repo_folder(name: str, folder: Path) -> Path:
    """The tiny twin of hub model `name` saved in its repository's layout under `folder`."""
    built = registry.load_model(name, "tiny", seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "instruct-pix2pix":
        for part in ("unet", "vae", "text_encoder"):
            getattr(built, part).save_pretrained(folder / part)
        _write_json(folder / "scheduler" / "scheduler_config.json", IP2P_SCHEDULER_CONFIG)
        _write_bpe_tokenizer(built.tokenizer, folder / "tokenizer")
        _write_model_index(folder)
    elif name.startswith("blip"):
        _blip_at_published_input_size(name).save_pretrained(folder)
        built.processor.tokenizer.save_pretrained(folder)
        # BLIP-large's preprocessor_config.json: 384 px bicubic, CLIP mean/std (transformers'
        # BlipImageProcessor defaults are exactly these).
        from transformers import BlipImageProcessor

        BlipImageProcessor().save_pretrained(folder)
        vocab = sorted(built.processor.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        (folder / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab))
    else:
        built.model.save_pretrained(folder)
        built.tokenizer.save_pretrained(folder)
        _write_bpe_tokenizer(built.tokenizer, folder)
    return folder


def _blip_at_published_input_size(name: str) -> object:
    """The tiny BLIP with the published vision input: 384 px in 16 px patches (24x24 grid)."""
    import torch
    import transformers

    from edit3d.models import blip

    config = blip.tiny_config()
    config.vision_config.image_size = 384
    config.vision_config.patch_size = 16
    model_class = (
        "BlipForConditionalGeneration" if "caption" in name else ("BlipForImageTextRetrieval")
    )
    torch.manual_seed(0)
    return getattr(transformers, model_class)(config)


def _write_bpe_tokenizer(tokenizer: object, folder: Path) -> None:
    """vocab.json + merges.txt (+ tokenizer_config.json), the files the publishers ship."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    (folder / "tokenizer.json").unlink(missing_ok=True)  # not in the published folders
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")


IP2P_SCHEDULER_CONFIG = {
    "_class_name": "EulerAncestralDiscreteScheduler",
    "_diffusers_version": "0.15.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "trained_betas": None,
}
"""timbrooks/instruct-pix2pix scheduler/scheduler_config.json: no clip_sample and no
set_alpha_to_one (a DDIM scheduler read from it alone takes DDIM's defaults)."""


def _write_json(path: Path, data: dict) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _write_model_index(folder: Path) -> None:
    index = {
        "_class_name": "StableDiffusionInstructPix2PixPipeline",
        "_diffusers_version": "0.15.0.dev0",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    _write_json(folder / "model_index.json", index)


def populate_hub_cache(cache: Path, repo_id: str, revision: str, files_from: Path) -> Path:
    """File every file under `files_from` into `cache` as huggingface_hub stores a download:
    content-addressed blobs, `snapshots/<revision>/<path>` links to them, `refs/main`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    for source in sorted(p for p in files_from.rglob("*") if p.is_file()):
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / source.relative_to(files_from)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
