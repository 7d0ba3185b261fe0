"""ns-train config.yml and checkpoints are read as data: a hostile file runs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from edit3d.field.nerfstudio_run import _latest_checkpoint
from edit3d.field.ns_config import ConfigError, ConfigRecord, read_trainer_config


def _nerfacto_config_yml(tmp_path: Path) -> Path:
    from nerfstudio.configs.method_configs import method_configs

    path = tmp_path / "config.yml"
    path.write_text(yaml.dump(method_configs["nerfacto"]))  # exactly as ns-train writes it
    return path


def test_reads_nerfstudios_own_config_as_data(tmp_path: Path) -> None:
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig

    config = read_trainer_config(_nerfacto_config_yml(tmp_path))
    assert isinstance(config, ConfigRecord) and config.method_name == "nerfacto"
    model = config.pipeline.model
    assert type(model) is NerfactoModelConfig and model._target is NerfactoModel
    assert model.num_proposal_samples_per_ray == (256, 96)
    assert model.camera_optimizer.mode == "SO3xR3"
    dataparser = config.pipeline.datamanager.dataparser
    assert type(dataparser) is NerfstudioDataParserConfig
    assert config.relative_model_dir == Path("nerfstudio_models")
    # Types not rebuilt stay plain records; `!!python/name` stays a string.
    assert config.optimizers["fields"]["optimizer"].type_name.endswith("AdamOptimizerConfig")
    assert config.optimizers["fields"]["optimizer"]._target == "torch.optim.adam.Adam"


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:os.system ['touch {marker}']",
        "!!python/object/apply:subprocess.check_call [['touch', '{marker}']]",
        "!!python/module:os",
        "!!python/name:os.system",
    ],
)
def test_hostile_config_runs_nothing(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    config_yml = _nerfacto_config_yml(tmp_path)
    text = config_yml.read_text().replace(
        "method_name: nerfacto", f"method_name: {payload.format(marker=marker)}"
    )
    config_yml.write_text(text)
    try:
        config = read_trainer_config(config_yml)
    except ConfigError as exc:
        assert str(config_yml) in str(exc)
    else:  # a name tag is data: it must come back as the plain string, never a callable
        assert config.method_name == "os.system"
    assert not marker.exists()


def test_hostile_object_at_top_level_is_refused(tmp_path: Path) -> None:
    config_yml = tmp_path / "config.yml"
    config_yml.write_text("!!python/object:os.Thing {a: 1}\n")
    with pytest.raises(ConfigError, match="not an ns-train TrainerConfig"):
        read_trainer_config(config_yml)


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)


def test_hostile_checkpoint_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    models = tmp_path / "nerfstudio_models"
    models.mkdir()
    torch.save({"step": 1, "pipeline": {}, "extra": _Boom(marker)}, models / "step-000000001.ckpt")
    with pytest.raises(ValueError, match="weights_only"):
        _latest_checkpoint(models)
    assert not marker.exists()
    # The payload is live: an unrestricted load runs it (so the assertion above can fail).
    torch.load(models / "step-000000001.ckpt", weights_only=False)
    assert marker.exists()
