"""The configuration base: every config rejects unknown keys (construction, from_dict, replace) with a
GenemInputError that names them and lists the valid ones; the shipped default model's saved settings load."""
import json

import pytest

from genem.config import Config
from genem.io import GenemInputError
from genem.restore import TrainConfig
from genem.restore.model import DEFAULT_MODEL_DIR
from genem.restore.unet import UNetConfig
from genem.simulate import SimulationConfig, StructureSpec
from genem.translate import DiscriminatorConfig, GeneratorConfig, TranslateTrainConfig

CONFIGS = [SimulationConfig, StructureSpec, TranslateTrainConfig, GeneratorConfig, DiscriminatorConfig, TrainConfig,
           UNetConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_unknown_key_is_rejected_everywhere(cls):
    assert issubclass(cls, Config)
    valid = cls.field_names()
    for make in (lambda: cls(bogus_key=1), lambda: cls.from_dict({"bogus_key": 1}),
                 lambda: cls().replace(bogus_key=1)):
        with pytest.raises(GenemInputError, match="bogus_key") as err:
            make()
        assert cls.config_name in str(err.value) and ", ".join(valid) in str(err.value)


@pytest.mark.parametrize("cls", CONFIGS)
def test_round_trip_through_json(cls):
    cfg = cls()
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_nested_and_sourced_errors():
    with pytest.raises(GenemInputError, match=r"^run/config.json: unknown parameter\(s\) n_dwn; valid: base_channels"):
        TranslateTrainConfig.from_dict({"generator": {"n_dwn": 2}}, "run/config.json")
    cfg = TranslateTrainConfig.from_dict({"generator": {"n_blocks": 2}, "steps": 7})
    assert cfg.generator == GeneratorConfig(n_blocks=2) and cfg.steps == 7
    with pytest.raises(GenemInputError, match="structure: unknown parameter.*wieght"):
        SimulationConfig.from_dict({"structures": [{"path": "a.pdb", "wieght": 2}]})
    assert SimulationConfig().replace(seed=3).seed == 3


def test_default_model_settings_load():
    info = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    train = info["meta"]["train_config"]
    assert TrainConfig.from_dict(train).to_dict() == train
    for key in ("diffusion_config", "postprocess_config"):
        assert UNetConfig.from_dict(info[key]).to_dict() == info[key]
