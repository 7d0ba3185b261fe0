"""Start from an existing `ns-train nerfacto` run: its config.yml, checkpoint and transform.

An ns-train output folder holds `config.yml` (nerfstudio's TrainerConfig, YAML with Python
tags, read as data by `edit3d.field.ns_config`), `dataparser_transforms.json` (the transform
and scale it trained in) and
`nerfstudio_models/step-*.ckpt` (`{"step", "pipeline": {"_model.<param>": tensor, ...}}`).
The run's own transform is authoritative: the checkpoint's weights live in that frame.
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edit3d.field.ns_config import read_trainer_config
from edit3d.field.presets import FieldConfig
from edit3d.scene.dataset import (
    COLMAP_MODEL_DIRS,
    load_dataset,
    nerfstudio_transform_for_file_poses,
)

if TYPE_CHECKING:
    from edit3d.field.nerfacto_field import NerfactoField


def load_nerfstudio_run(
    cls: type[NerfactoField], config_yml: Path, device: str, *, data: str | Path | None = None
) -> NerfactoField:
    """A NerfactoField holding the run's latest checkpoint (see module docstring)."""
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    from edit3d.field.model import build_nerfacto
    from edit3d.field.nerfacto_field import check_camera_model

    config = read_trainer_config(config_yml)
    model_config = config.pipeline.model
    if not isinstance(model_config, NerfactoModelConfig):
        raise ValueError(f"config_yml must be a nerfacto run, got {type(model_config).__name__}")
    run_dir = config_yml.parent
    dataset = load_dataset(_data_dir(config, run_dir, data))
    check_camera_model(dataset)
    transform, scale = _run_transform(run_dir, dataset.root)
    state = _latest_checkpoint(
        run_dir / str(getattr(config, "relative_model_dir", "nerfstudio_models"))
    )
    weights = _model_weights(state["pipeline"])
    num_views = int(weights["field.embedding_appearance.embedding.weight"].shape[0])
    views, downscale = _training_views(config, dataset)
    if num_views != len(views):
        raise ValueError(
            f"the run trained on {num_views} images but its split of {dataset.root} has "
            f"{len(views)}; pass data= the folder it was trained on"
        )
    field_config = FieldConfig.from_nerfacto(
        model_config,
        mixed_precision=bool(getattr(config, "mixed_precision", False)),
        max_image_size=_downscaled_long_side(views, downscale),
    )
    model = build_nerfacto(
        field_config.nerfacto_config(device),
        torch.from_numpy(dataset.scene_aabb),
        num_views,
        device,
    )
    _load_weights(model, weights, config_yml)
    field = cls(
        field_config,
        views,
        transform,
        scale,
        dataset.scene_aabb,
        device=device,
        dataset_root=dataset.root,
        distortion=dataset.distortion,
        model=model,
    )
    # ns-train saves the index of its last iteration; replay that iteration's schedule
    # callbacks (proposal weight annealing) so renders match the run's own.
    last_iteration = int(state.get("step", 0))
    field.sync_schedule(last_iteration)
    field.step = last_iteration + 1
    model.update_to_step(field.step)
    if state.get("optimizers"):
        optimizer = field.optimizer(field.config.base_lr)
        optimizer.load_state_dict(_merged_optimizer_state(state["optimizers"], optimizer))
    return field


def _merged_optimizer_state(
    saved: dict[str, Any], optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """ns-train's per-group Adam states as one state of our optimizer (one group per
    param group name, parameters in the same `get_param_groups` order)."""
    merged: dict[str, Any] = {"state": {}, "param_groups": []}
    offset = 0
    for group in optimizer.param_groups:
        name = group["name"]
        theirs = saved.get(name)
        if theirs is None or len(theirs["param_groups"]) != 1:
            raise ValueError(f"the run's optimizer state has no single {name!r} group")
        their_group = theirs["param_groups"][0]
        if len(their_group["params"]) != len(group["params"]):
            raise ValueError(f"the run's {name!r} optimizer state does not fit this model")
        indices = {}
        for k, index in enumerate(their_group["params"]):
            indices[index] = offset + k
            if index in theirs["state"]:
                merged["state"][offset + k] = theirs["state"][index]
        merged["param_groups"].append(
            {**their_group, "name": name, "params": [indices[i] for i in their_group["params"]]}
        )
        offset += len(group["params"])
    return merged


def _training_views(config: Any, dataset: Any) -> tuple[list, int]:
    """The dataset's views the run trained on, in its camera-index order, and the image
    downscale factor it trained at (its dataparser's, resolved as ns-train resolves it).

    ns-train holds out eval images by default (eval_mode "fraction"); its appearance
    embedding and camera optimiser have one row per *training* image, so the run's own
    dataparser settings decide which views the field has.
    """
    from nerfstudio.utils.rich_utils import CONSOLE

    parser_config = copy.deepcopy(config.pipeline.datamanager.dataparser)
    parser_config.data = dataset.root
    quiet, CONSOLE.quiet = CONSOLE.quiet, True
    try:
        parser = parser_config.setup()
        outputs = parser.get_dataparser_outputs("train")
    finally:
        CONSOLE.quiet = quiet
    by_file = {Path(path).name: view for view, path in _views_with_paths(dataset)}
    missing = [Path(f).name for f in outputs.image_filenames if Path(f).name not in by_file]
    if missing:
        raise ValueError(f"the run's training images are not in {dataset.root}: {missing[:3]}")
    downscale = int(getattr(parser, "downscale_factor", None) or 1)
    return [by_file[Path(f).name] for f in outputs.image_filenames], downscale


def _downscaled_long_side(views: list, downscale: int) -> int | None:
    """The longest image side the run trained at (nerfstudio floors sizes / factor)."""
    if downscale <= 1:
        return None
    return max(max(v.intrinsics.width, v.intrinsics.height) for v in views) // downscale


def _views_with_paths(dataset: Any) -> list[tuple[Any, Path]]:
    return [(view, dataset.image_paths[view.name]) for view in dataset.views]


def _data_dir(config: Any, run_dir: Path, data: str | Path | None) -> Path:
    if data is not None:
        return Path(data)
    recorded = config.pipeline.datamanager.data or config.pipeline.datamanager.dataparser.data
    candidates = [Path(recorded), run_dir / recorded, *(p / recorded for p in run_dir.parents)]
    for candidate in candidates:
        if _holds_dataset(candidate):
            return candidate
    raise FileNotFoundError(f"the run's dataset {str(recorded)!r} was not found; pass data=")


def _holds_dataset(folder: Path) -> bool:
    """Whether `load_dataset` reads `folder`: nerfstudio, Blender-synthetic or COLMAP."""
    if (folder / "transforms.json").is_file() or (folder / "transforms_train.json").is_file():
        return True
    return any(
        (folder / model / f"cameras.{ext}").is_file()
        for model in COLMAP_MODEL_DIRS
        for ext in ("bin", "txt")
    )


def _run_transform(run_dir: Path, dataset_root: Path) -> tuple[np.ndarray, float]:
    path = run_dir / "dataparser_transforms.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the run's frame is unknown")
    saved = json.loads(path.read_text())
    return nerfstudio_transform_for_file_poses(
        np.asarray(saved["transform"], dtype=np.float64), float(saved["scale"]), dataset_root
    )


def _latest_checkpoint(model_dir: Path) -> dict[str, Any]:
    checkpoints = sorted(model_dir.glob("step-*.ckpt"))
    if not checkpoints:
        raise FileNotFoundError(f"no step-*.ckpt under {model_dir}")
    try:
        return torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # A checkpoint is data: one that needs arbitrary Python objects to load is refused.
        raise ValueError(
            f"{checkpoints[-1]} holds objects other than tensors and plain containers; "
            f"it is not loaded (weights_only): {str(exc).splitlines()[0]}"
        ) from None


def _model_weights(pipeline_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's parameters out of a pipeline state dict (DDP prefix and LPIPS dropped)."""
    weights = {}
    for key, value in pipeline_state.items():
        key = key.removeprefix("module.")
        if key.startswith("_model.") and not key.startswith("_model.lpips."):
            weights[key.removeprefix("_model.")] = value
    return weights


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{source}: checkpoint does not fit this nerfacto build (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}); a run trained with tiny-cuda-nn needs it installed"
        )


def run_folders(config_yml: Path) -> tuple[Path, Path]:
    """(dataset folder, checkpoint folder) the ns-train run at `config_yml` names, as
    `load_nerfstudio_run` finds them: for a caller that confines what a run may read."""
    config = read_trainer_config(config_yml)
    run_dir = config_yml.parent
    model_dir = run_dir / str(getattr(config, "relative_model_dir", "nerfstudio_models"))
    return _data_dir(config, run_dir, None), model_dir


def load_splatfacto_run(config_yml: Path, device: str, *, data: str | Path | None = None) -> Any:
    """A SplatfactoField holding an `ns-train splatfacto` run's latest checkpoint: its
    Gaussians (any count), camera corrections, step and per-group Adam state."""
    from nerfstudio.models.splatfacto import SplatfactoModelConfig

    from edit3d.field.splat_presets import SplatConfig
    from edit3d.field.splatfacto_field import SplatfactoField, check_cameras

    config = read_trainer_config(config_yml)
    model_config = config.pipeline.model
    if not isinstance(model_config, SplatfactoModelConfig):
        raise ValueError(f"config_yml must be a splatfacto run, got {type(model_config).__name__}")
    run_dir = config_yml.parent
    dataset = load_dataset(_data_dir(config, run_dir, data))
    check_cameras(dataset)
    transform, scale = _run_transform(run_dir, dataset.root)
    state = _latest_checkpoint(
        run_dir / str(getattr(config, "relative_model_dir", "nerfstudio_models"))
    )
    views, downscale = _training_views(config, dataset)
    field_config = SplatConfig.from_splatfacto(
        model_config,
        rasterizer="cuda" if device.startswith("cuda") else "torch",
        max_image_size=_downscaled_long_side(views, downscale),
    )
    field = SplatfactoField(
        field_config, views, transform, scale, dataset.scene_aabb, device=device,
        dataset_root=dataset.root, seed_points=(torch.zeros(4, 3), torch.zeros(0, 3)),
    )  # fmt: skip
    weights = _model_weights(state["pipeline"])
    expected = set(field.model.state_dict())
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{config_yml}: checkpoint does not fit a splatfacto model (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]})"
        )
    # nerfstudio's own load rebuilds the Gaussian parameters at the checkpoint's count.
    field.model.load_state_dict(weights)
    field.model.to(device)
    field.step = int(state.get("step", 0)) + 1
    field.model.step = field.step
    if state.get("optimizers"):
        for name, optimizer in field.optimizers(field_config.base_lr).items():
            if name in state["optimizers"]:
                optimizer.load_state_dict(state["optimizers"][name])
    return field
