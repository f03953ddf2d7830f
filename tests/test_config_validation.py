"""Config validation: every key has a range or a set of choices, and a bad value is one line naming it.

Each bad value goes through ``python -m deeplab train`` in-process; validation comes before any data or model, so
these tests build nothing and the data root does not even exist.
"""

import dataclasses
import re

import pytest

from deeplab.__main__ import main
from deeplab.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    config_names,
    get_config,
    validate_config,
)

SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
ALL_KEYS = {f"{section}.{field.name}" for section, cls in SECTIONS.items() for field in dataclasses.fields(cls)}

# One value per key that ``toy-r50-d16`` (8 images a step, 800 iterations, 0 epochs) must refuse.
BAD_VALUES = {
    "model.num_classes": "0",
    "model.depth": "34",
    "model.output_stride": "32",
    "model.deep_stem": "maybe",
    "model.aux_head": "maybe",
    "model.decoder": "no-decoder",
    "model.channels": "0",
    "model.shortcut_channels": "-1",
    "model.dropout": "1.0",
    "model.pretrained": "ResNet50_Weights.NOT_A_MEMBER",
    "model.init_from": "",
    "model.init_min_loaded": "1.5",
    "data.dataset": "coco",
    "data.train_split": "train_aug",  # a VOC split the toy dataset lacks
    "data.val_split": "test",
    "data.crop_size": "0,112",
    "data.scale": "160,320",  # long < short
    "data.ratio_range": "2.0,0.5",
    "data.cat_max_ratio": "0",
    "data.num_workers": "-1",
    "train.epochs": "-1",
    "train.batch_size": "0",
    "train.optimizer": "adam",
    "train.lr": "nan",
    "train.momentum": "1.0",
    "train.weight_decay": "-1e-4",
    "train.poly_power": "0",
    "train.min_lr_ratio": "1.5",
    "train.aux_weight": "inf",
    "train.class_weights": "1,-2",
    "train.ignore_index": "256",
    "train.iterations": "0",  # with epochs 0: no length at all
    "train.batch_per_process": "16",  # more than the batch of 8
    "train.amp": "fp8",
    "train.channels_last": "maybe",
    "train.sync_bn": "maybe",
    "train.allow_tf32": "maybe",
    "train.cudnn_benchmark": "maybe",
    "train.eval_every_epochs": "0",
    "train.checkpoint_every": "0",
    "train.log_every": "0",
    "train.seed": "-1",
    "train.tensorboard": "maybe",
}


def test_every_key_has_a_bad_value():
    assert set(BAD_VALUES) == ALL_KEYS


@pytest.mark.parametrize("key", sorted(ALL_KEYS))
def test_a_bad_value_is_one_line_naming_its_key(key, tmp_path, capsys):
    bad = BAD_VALUES.get(key)
    assert bad is not None, f"add a bad value for {key} to BAD_VALUES"
    argv = ["train", "--config", "toy-r50-d16", "--data-root", str(tmp_path / "nowhere"), "--set", f"{key}={bad}"]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ") and key in err, err


def test_every_shipped_config_validates():
    assert len(config_names()) == 20
    for name in config_names():
        validate_config(get_config(name))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=nan", "train.lr=nan must be a finite number > 0"),
        ("data.ratio_range=2.0,0.5", "data.ratio_range=(2.0, 0.5) must be two numbers 0 < low <= high"),
        ("model.pretrained=ResNet50_Weights.IMAGENET1K_V2", "ResNet50_Weights name with model.deep_stem=false"),
        ("model.num_classes=256", "model.num_classes=256 must be >= 1 and <= train.ignore_index=255"),
    ],
)
def test_messages_say_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        get_config("toy-r50-d16", [override])


def test_overrides_are_validated_together_not_one_by_one():
    config = get_config("voc-r50-d16", ["data.dataset=toy", "data.train_split=train"])
    assert (config.data.dataset, config.data.train_split) == ("toy", "train")
    tv = get_config("voc-r50-d16", ["model.pretrained=ResNet50_Weights.IMAGENET1K_V2", "model.deep_stem=false"])
    assert tv.model.backbone_weights == "ResNet50_Weights.IMAGENET1K_V2"


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("train", "batch_size", 0), ("model", "aux_head", "yes"), ("train", "lr", float("nan")), ("data", "scale", [1])],
)
def test_a_bad_stored_config_is_refused(section, key, value):
    stored = dataclasses.asdict(get_config("toy-r50-d16"))
    stored[section][key] = value
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}=.* must be "):
        config_from_dict(stored)


def test_a_good_stored_config_round_trips():
    config = get_config("toy-r50-d16")
    assert config_from_dict(dataclasses.asdict(config)) == config
