"""Write a field as an `ns-train` output folder that nerfstudio's tools open.

    <out>/<experiment>/<nerfacto|splatfacto>/<timestamp>/
      config.yml                      nerfstudio's TrainerConfig (yaml.dump of a real one)
      dataparser_transforms.json      written by nerfstudio's own dataparser outputs
      nerfstudio_models/step-N.ckpt   {"step", "pipeline": {"_model.<param>": tensor}, ...}

The config points at the field's dataset with the dataparser settings edit3d reads it with
(every image a training view, no downscale), so the dataparser reproduces the field's frame
and image order, and `eval_setup` (ns-viewer, ns-render, ns-export) rebuilds the same model.
A splatfacto field is written with splatfacto's full-image data manager; nerfstudio's model
loading rebuilds its Gaussians at the checkpoint's count.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from edit3d.scene.dataset import load_dataset, nerfstudio_dataparser_config

if TYPE_CHECKING:
    from edit3d.field.nerfacto_field import NerfactoField
    from edit3d.field.splatfacto_field import SplatfactoField


def write_nerfstudio_run(
    field: NerfactoField | SplatfactoField,
    out_dir: str | Path,
    *,
    experiment: str = "edit3d",
    timestamp: str,
) -> Path:
    """Write the run folder under `out_dir`; returns its config.yml."""
    import yaml
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.engine.trainer import TrainerConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    if field.dataset_root is None or not field.dataset_root.exists():
        raise FileNotFoundError(f"the field's dataset is not available: {field.dataset_root}")
    dataset = load_dataset(field.dataset_root)
    if [v.name for v in dataset.views] != [v.name for v in field.views]:
        raise ValueError(
            "the field trains on a subset of its dataset's images (an imported run with "
            "held-out views); it cannot be written as a run over the whole dataset"
        )
    parser = nerfstudio_dataparser_config(dataset.root, dataset.format, dataset.colmap_model)
    if field.backend == "splatfacto":
        from nerfstudio.data.datamanagers.full_images_datamanager import (
            FullImageDatamanagerConfig,
        )

        datamanager = FullImageDatamanagerConfig(dataparser=parser)
        mixed_precision = False  # as ns-train splatfacto
    else:
        datamanager = VanillaDataManagerConfig(dataparser=parser)
        mixed_precision = field.config.mixed_precision
    config = TrainerConfig(
        method_name=field.backend,
        experiment_name=experiment,
        timestamp=timestamp,
        output_dir=Path(out_dir).resolve(),
        max_num_iterations=max(field.step, 1),
        mixed_precision=mixed_precision,
        pipeline=VanillaPipelineConfig(
            datamanager=datamanager,
            model=copy.deepcopy(field.model.config),
        ),
    )
    run_dir = config.get_base_dir()
    model_dir = run_dir / config.relative_model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yml").write_text(yaml.dump(config))
    outputs = copy.deepcopy(parser).setup().get_dataparser_outputs("train")
    outputs.save_dataparser_transform(run_dir / "dataparser_transforms.json")
    # ns-train names a checkpoint by the index of its last iteration.
    last = max(field.step - 1, 0)
    pipeline = {f"_model.{key}": value for key, value in field.model.state_dict().items()}
    state = {"step": last, "pipeline": pipeline, "optimizers": {}, "schedulers": {}}
    torch.save(state, model_dir / f"step-{last:09d}.ckpt")
    return run_dir / "config.yml"
