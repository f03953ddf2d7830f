"""Configs: the 12 reference configs and typed overrides by name."""

import pytest

from deeplab import ConfigError, config_names, get_config
from deeplab.config import absolute_path_overrides


def test_the_twelve_reference_configs_follow_the_recipe():
    names = config_names()
    expected = {f"{d}-r{depth}-d{os}" for d in ("voc", "ade20k", "cityscapes") for depth in (50, 101) for os in (8, 16)}
    assert expected <= set(names)
    for name in expected:
        config = get_config(name)
        dataset, depth, stride = name.split("-")
        assert config.model.depth == int(depth[1:]) and config.model.output_stride == int(stride[1:])
        assert (config.train.lr, config.train.momentum, config.train.weight_decay) == (0.01, 0.9, 5e-4)
        assert (config.train.poly_power, config.train.aux_weight) == (0.9, 0.4)
        classes, crop, epochs, batch = {
            "voc": (21, (512, 512), 60, 16),
            "ade20k": (150, (512, 512), 130, 16),
            "cityscapes": (19, (512, 1024), 220, 8),
        }[dataset]
        assert (config.model.num_classes, config.data.crop_size) == (classes, crop)
        assert (config.train.epochs, config.train.batch_size) == (epochs, batch)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown config 'voc-r52-d8'; valid names: voc-r50-d8, "):
        get_config("voc-r52-d8")


def test_overrides_are_typed():
    config = get_config(
        "voc-r50-d8",
        [
            "train.epochs=2",
            "train.lr=0.02",
            "model.aux_head=false",
            "data.crop_size=256,320",
            "data.dataset=toy",
            "data.train_split=train",
        ],
    )
    assert config.train.epochs == 2 and config.train.lr == 0.02 and config.model.aux_head is False
    assert config.data.crop_size == (256, 320) and config.data.dataset == "toy"


def test_get_config_returns_a_fresh_copy():
    get_config("voc-r50-d8", ["train.epochs=1"])
    assert get_config("voc-r50-d8").train.epochs == 60


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=2", r"unknown config key 'train.epoch'; valid keys: train.epochs, "),
        ("train.epochs=two", r"train.epochs expects int, got 'two'"),
        ("model.aux_head=maybe", r"model.aux_head expects bool, got 'maybe'"),
        ("data.crop_size=256", r"data.crop_size expects .*expected 2 comma-separated values"),
        ("epochs=2", r"must look like 'section.key=value'"),
        ("optimizer.lr=1", r"must look like 'section.key=value'"),
    ],
)
def test_bad_overrides_are_one_clear_line(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        get_config("voc-r50-d8", [override])
    assert "\n" not in str(error.value)


def test_reference_configs_start_from_imagenet_v1c_and_toy_configs_from_scratch(tmp_path):
    for name in config_names():
        model = get_config(name).model
        expected = {"r50": "weights/resnet50_v1c-2cccc1ad.pth", "r101": "weights/resnet101_v1c-e67eebb6.pth"}
        depth = name.split("-")[1]
        assert model.backbone_weights == (None if name.startswith("toy-") else expected[depth]), name
    assert get_config("voc-r50-d8", ["model.pretrained=none"]).model.backbone_weights is None
    standard_stem = ["model.pretrained=ResNet50_Weights.IMAGENET1K_V2", "model.deep_stem=false"]
    torchvision_name = get_config("voc-r50-d8", standard_stem).model
    assert torchvision_name.backbone_weights_file is None  # a torchvision weight enum is no file


def test_relative_weight_paths_are_made_absolute_against_the_callers_folder(tmp_path):
    config = get_config("voc-r101-d8")
    assert absolute_path_overrides(config, tmp_path) == [
        f"model.pretrained={tmp_path.resolve() / 'weights' / 'resnet101_v1c-e67eebb6.pth'}"
    ]
    assert absolute_path_overrides(get_config("toy-r50-d8"), tmp_path) == []
