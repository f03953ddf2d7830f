"""Typed configurations: the 12 reference configs by name (``"voc-r101-d8"``) and overrides by dotted key.

The values follow the reference recipe (sssegmentation's DeepLabV3+ configs): SGD lr 0.01, momentum 0.9,
weight decay 5e-4, poly schedule with power 0.9 down to 1% of the initial lr, auxiliary loss weight 0.4.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deeplab.data.classes import CLASSES_FILE, TOY_CLASSES, dataset_info
from deeplab.data.datasets import DATASETS, FolderDataset

FOLDER = FolderDataset.name


class ConfigError(ValueError):
    """An unknown config name or key, or a value of the wrong type or out of its range."""


@dataclass
class ModelConfig:
    """The network: ``depth`` 50/101, ``output_stride`` 8/16 (the paper's names)."""

    num_classes: int = 21  # 0: as many as the folder dataset's classes.json lists (data.dataset=folder only)
    depth: int = 50
    output_stride: int = 8
    deep_stem: bool = True
    aux_head: bool = True
    channels: int = 512
    decoder: bool = True  # false: DeepLabV3's head instead (no shortcut, no refinement), for the paper's ablation
    shortcut_channels: int = 48
    dropout: float = 0.1
    pretrained: str = "none"  # ImageNet backbone weights: a file path, a torchvision weight name, or "none"
    init_from: str = "none"  # fine-tuning: a checkpoint whose tensors of fitting name and shape start the model
    init_min_loaded: float = 0.5  # the share of the model's weights init_from must give, else it is refused

    @property
    def backbone_weights(self) -> str | None:
        """``pretrained``, or ``None`` to train from scratch ("none"; "" in configs saved before "none" existed)."""
        return _unless_none(self.pretrained)

    @property
    def init_checkpoint(self) -> str | None:
        """``init_from``, or ``None`` when the model starts from ``pretrained`` alone ("none")."""
        return _unless_none(self.init_from)

    @property
    def backbone_weights_file(self) -> str | None:
        """``pretrained`` when it names a file (not a torchvision weight enum such as ``ResNet50_Weights.V2``)."""
        weights = self.backbone_weights
        return weights if weights is not None and "_Weights." not in weights else None


def _unless_none(value: str) -> str | None:
    """``value``, or ``None`` where it says "none" (in any case; "" too)."""
    return None if value.strip().lower() in ("", "none") else value


@dataclass
class DataConfig:
    """The dataset and its augmentation; sizes are ``(H, W)`` crops and ``(long, short)`` resize scales."""

    dataset: str = "voc"
    train_split: str = "train_aug"
    val_split: str = "val"
    crop_size: tuple[int, int] = (512, 512)
    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    num_workers: int = 4


@dataclass
class TrainConfig:
    """The optimisation recipe; ``batch_size`` is the global batch over all processes."""

    epochs: int = 60
    batch_size: int = 16
    optimizer: str = "sgd"  # sgd (with momentum: the reference's) | adamw (momentum unused)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    min_lr_ratio: float = 0.01
    aux_weight: float = 0.4
    ignore_index: int = 255
    class_weights: str = "none"  # per-class loss weights: none (the reference's), auto (median frequency), w0,w1,...
    iterations: int = 0  # optimizer steps; 0 = epochs * steps per epoch (the reference's sampler, see sampling.py)
    batch_per_process: int = 0  # images per forward; 0 = batch_size / processes (the reference's); smaller accumulates
    amp: str = "none"  # none | bf16 | fp16 (fp16 on GPUs, with a gradient scaler)
    channels_last: bool = True  # channels_last memory where it is faster: CPUs, and GPUs under amp (see precision.py)
    sync_bn: bool = True  # SyncBatchNorm across GPUs (CPU processes keep per-process statistics)
    allow_tf32: bool = False  # TF32 in cuDNN convolutions and matmuls on Ampere+ GPUs; the reference turns it off
    cudnn_benchmark: bool = True  # let cuDNN time its kernels for each input shape, as the reference does
    eval_every_epochs: int = 10
    checkpoint_every: int = 1000  # iterations
    log_every: int = 50  # iterations
    seed: int = 0
    tensorboard: bool = False  # also log losses, lr, per-class IoU and validation overlays to <run>/tb


@dataclass
class Config:
    """A whole experiment."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_DATASETS = {
    # name: (classes, train split, crop (H, W), scale (long, short), epochs, global batch)
    "voc": (21, "train_aug", (512, 512), (2048, 512), 60, 16),
    "ade20k": (150, "train", (512, 512), (2048, 512), 130, 16),
    "cityscapes": (19, "train", (512, 1024), (2048, 1024), 220, 8),
}

# The published sizes of those training splits (VOC's trainaug, ADE20k's and Cityscapes' train), which set the
# reference's steps per epoch.
TRAIN_IMAGES = {"voc": 10_582, "ade20k": 20_210, "cityscapes": 2_975}


# open-mmlab's ImageNet ResNetV1c files, which every reference run starts from
# (`python -m deeplab weights imagenet` gets them).
IMAGENET_V1C = {50: "weights/resnet50_v1c-2cccc1ad.pth", 101: "weights/resnet101_v1c-e67eebb6.pth"}


def _reference_config(dataset: str, depth: int, output_stride: int) -> Config:
    """The reference's run: ImageNet V1c start, global batch split over the processes, fp32 with TF32 off."""
    num_classes, train_split, crop, scale, epochs, batch = _DATASETS[dataset]
    return Config(
        name=f"{dataset}-r{depth}-d{output_stride}",
        model=ModelConfig(
            num_classes=num_classes, depth=depth, output_stride=output_stride, pretrained=IMAGENET_V1C[depth]
        ),
        data=DataConfig(dataset=dataset, train_split=train_split, crop_size=crop, scale=scale),
        train=TrainConfig(epochs=epochs, batch_size=batch),
    )


def _toy_config(depth: int, output_stride: int) -> Config:
    """The CPU-sized recipe for the toy shapes (``python -m deeplab data toy``): same network with 256-channel heads,
    112x112 crops, bf16, and AdamW, which trains from scratch (no ImageNet weights) in far fewer steps than SGD;
    data is loaded in the training process, where a worker process would only compete for the CPU cores. Its
    random rescaling stays within 0.75-1.25 of the test scale: the reference's 0.5-2.0, made for long runs, shows a
    run of 800 steps from scratch objects at sizes it is never tested on (docs/course.md)."""
    return Config(
        name=f"toy-r{depth}-d{output_stride}",
        model=ModelConfig(num_classes=len(TOY_CLASSES), depth=depth, output_stride=output_stride, channels=256),
        data=DataConfig(
            dataset="toy",
            train_split="train",
            crop_size=(112, 112),
            scale=(320, 160),
            ratio_range=(0.75, 1.25),
            num_workers=0,
        ),
        train=TrainConfig(
            epochs=0,
            iterations=800,
            batch_size=8,
            batch_per_process=8,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=1e-4,
            amp="bf16",
            eval_every_epochs=4,
            checkpoint_every=200,
            log_every=10,
        ),
    )


def _folder_config(depth: int, output_stride: int) -> Config:
    """A user's own folder of images and masks (``deeplab.data.FolderDataset``) with the reference's VOC recipe.

    Differs from the reference by name: the number of classes comes from the folder's ``classes.json``
    (``model.num_classes=0``), the splits are the folder's ``train`` and ``val``, and the length is set in epochs of
    the folder's training images (60, as VOC's; change ``train.epochs`` or ``train.iterations`` for your data).
    """
    config = _reference_config("voc", depth, output_stride)
    config.name = f"folder-r{depth}-d{output_stride}"
    config.model.num_classes = 0
    config.data.dataset, config.data.train_split = "folder", "train"
    return config


_GRID = [(depth, output_stride) for depth in (50, 101) for output_stride in (8, 16)]
REFERENCE_CONFIGS: dict[str, Config] = {
    config.name: config for config in (_reference_config(dataset, *model) for dataset in _DATASETS for model in _GRID)
}
TOY_CONFIGS: dict[str, Config] = {config.name: config for config in (_toy_config(*model) for model in _GRID)}
FOLDER_CONFIGS: dict[str, Config] = {config.name: config for config in (_folder_config(*model) for model in _GRID)}
CONFIGS: dict[str, Config] = {**REFERENCE_CONFIGS, **TOY_CONFIGS, **FOLDER_CONFIGS}


def config_names(*, toy: bool = True, folder: bool = True) -> list[str]:
    """Every config name: the reference configs, then the toy ones (unless ``toy=False``), then those for a folder
    dataset (unless ``folder=False``), whose number of classes is known only with the folder."""
    return [*REFERENCE_CONFIGS, *(TOY_CONFIGS if toy else {}), *(FOLDER_CONFIGS if folder else {})]


def get_config(name: str, overrides: typing.Iterable[str] = ()) -> Config:
    """A fresh copy of the config called ``name``, with ``"section.key=value"`` overrides applied."""
    if name not in CONFIGS:
        raise ConfigError(f"unknown config {name!r}; valid names: {', '.join(config_names())}")
    config = copy.deepcopy(CONFIGS[name])
    for override in overrides:
        apply_override(config, override)
    validate_config(config)
    return config


def absolute_path_overrides(config: Config, base: Path) -> list[str]:
    """Overrides that make the file paths in ``config`` absolute, resolved against ``base`` (a working directory).

    A run started elsewhere (papermill's kernel, ``torchrun``'s processes) then finds the files the caller meant.
    """
    model = config.model
    files = {"model.pretrained": model.backbone_weights_file, "model.init_from": model.init_checkpoint}
    return [f"{key}={(base / path).resolve()}" for key, path in files.items() if path is not None]


def config_from_dict(values: dict[str, typing.Any]) -> Config:
    """The ``Config`` that ``dataclasses.asdict`` (or a JSON round trip of it) produced ``values`` from."""
    sections = {}
    for section in dataclasses.fields(Config):
        if section.name == "name":
            continue
        cls = typing.get_type_hints(Config)[section.name]
        hints = typing.get_type_hints(cls)
        given = values.get(section.name, {})
        unknown = set(given) - set(hints)
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)} in section {section.name!r}")
        sections[section.name] = cls(
            **{key: tuple(value) if typing.get_origin(hints[key]) is tuple else value for key, value in given.items()}
        )
    config = Config(name=values["name"], **sections)
    validate_config(config)
    return config


def apply_override(config: Config, override: str) -> None:
    """Set one value by dotted key, e.g. ``"train.epochs=2"`` or ``"data.crop_size=256,256"``, type-checked."""
    key, sep, text = override.partition("=")
    section_name, _, field_name = key.strip().partition(".")
    sections = {f.name for f in dataclasses.fields(Config) if f.name != "name"}
    if not sep or section_name not in sections:
        raise ConfigError(
            f"override {override!r} must look like 'section.key=value' with section in {sorted(sections)}"
        )
    section = getattr(config, section_name)
    hints = typing.get_type_hints(type(section))
    if field_name not in hints:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(f'{section_name}.{k}' for k in hints)}")
    setattr(section, field_name, _parse(text.strip(), hints[field_name], key))


def _parse(text: str, kind: typing.Any, key: str) -> typing.Any:
    """``text`` as a value of type ``kind`` (bool, int, float, str or a tuple of those)."""
    try:
        if typing.get_origin(kind) is tuple:
            items = [item for item in text.strip("()[] ").split(",") if item.strip()]
            item_types = typing.get_args(kind)
            if len(items) != len(item_types):
                raise ValueError(f"expected {len(item_types)} comma-separated values")
            return tuple(_parse(item.strip(), t, key) for item, t in zip(items, item_types, strict=True))
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError as error:
        raise ConfigError(f"{key} expects {getattr(kind, '__name__', kind)}, got {text!r} ({error})") from None


# Validation: every key has a rule, checked when a config is made (``get_config``, ``config_from_dict``), so that a
# bad value ends in one line naming it rather than in a traceback deep in training.


@dataclass(frozen=True)
class Rule:
    """What one config value may be: ``allows`` says it in words (for the error message), ``check`` tests it."""

    allows: str
    check: Callable[[typing.Any], bool]


def _is_int(value: typing.Any) -> bool:
    """An ``int`` proper (``True`` is an ``int`` to Python, not to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: typing.Any) -> bool:
    """A finite ``float`` or ``int``: NaN and infinities are no learning rates."""
    return (isinstance(value, float) or _is_int(value)) and math.isfinite(value)


def _integer(low: int, high: int | None = None) -> Rule:
    """An integer ``>= low`` (and ``<= high``)."""
    allows = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return Rule(allows, lambda value: _is_int(value) and low <= value and (high is None or value <= high))


def _number(interval: str) -> Rule:
    """A finite number in ``interval``, written as in maths: ``"[0, 1)"``, ``"(0, inf)"``."""
    low_text, high_text = (bound.strip() for bound in interval[1:-1].split(","))
    low, high = float(low_text), float(high_text)
    above = operator.gt if interval.startswith("(") else operator.ge
    below = operator.lt if interval.endswith(")") else operator.le
    if high == math.inf:
        allows = f"a finite number {'>' if above is operator.gt else '>='} {low_text}"
    else:
        allows = f"a finite number in {interval}"
    return Rule(allows, lambda value: _is_number(value) and above(value, low) and below(value, high))


def _choice(options: Iterable[typing.Any], what: str = "one of") -> Rule:
    """One of ``options``, of the same type (``50.0`` is no ResNet depth, ``1`` no ``True``)."""
    options = tuple(options)
    allows = f"{what} {', '.join(map(repr, options))}"
    return Rule(allows, lambda value: any(type(value) is type(option) and value == option for option in options))


def _pair(
    allows: str,
    item: Callable[[typing.Any], bool],
    ordered: Callable[[typing.Any, typing.Any], bool] | None = None,
) -> Rule:
    """Two values that each pass ``item`` (and together ``ordered(first, second)``, if given)."""

    def check(value: typing.Any) -> bool:
        pair = isinstance(value, tuple) and len(value) == 2 and all(map(item, value))
        return pair and (ordered is None or ordered(*value))

    return Rule(allows, check)


def _is_weights(value: typing.Any) -> bool:
    """``"none"`` (or ``""``), a file path, or the name of a torchvision weight enum member that exists."""
    return isinstance(value, str) and ("_Weights." not in value or _torchvision_weight_exists(value))


def _torchvision_weight_exists(name: str) -> bool:
    """Whether torchvision has the weights ``name`` (``"ResNet50_Weights.IMAGENET1K_V2"``); imported when asked."""
    from torchvision.models import get_weight

    try:
        get_weight(name)
    except (KeyError, ValueError):  # an unknown member, an unknown enum, a name without exactly one dot
        return False
    return True


_BOOLEAN = Rule("true or false", lambda value: isinstance(value, bool))
_NAME = Rule("a non-empty string", lambda value: isinstance(value, str) and value.strip() != "")


def _is_class_weights(value: typing.Any) -> bool:
    """``"none"``, ``"auto"`` or comma-separated numbers >= 0, not all 0."""
    if value in ("none", "auto"):
        return True
    try:
        weights = [float(part) for part in str(value).split(",")]
    except ValueError:
        return False
    return all(math.isfinite(weight) and weight >= 0 for weight in weights) and any(weights)


# Each key's own rule; the rules between keys (_CONTEXT_RULES) run once all of these hold.
_RULES: dict[str, Rule] = {
    "model.num_classes": _integer(0),
    "model.depth": _choice((50, 101)),
    "model.output_stride": _choice((8, 16)),
    "model.deep_stem": _BOOLEAN,
    "model.aux_head": _BOOLEAN,
    "model.channels": _integer(1),
    "model.decoder": _BOOLEAN,
    "model.shortcut_channels": _integer(1),
    "model.dropout": _number("[0, 1)"),
    "model.pretrained": Rule(
        "'none', a file path or an existing torchvision weight name such as 'ResNet50_Weights.IMAGENET1K_V2'",
        _is_weights,
    ),
    "model.init_from": Rule("'none' or a checkpoint file path", _NAME.check),
    "model.init_min_loaded": _number("[0, 1]"),
    "data.dataset": _choice(DATASETS),
    "data.train_split": _NAME,
    "data.val_split": _NAME,
    "data.crop_size": _pair("two integers >= 1 (height, width)", _integer(1).check),
    "data.scale": _pair("two integers long >= short >= 1", _integer(1).check, operator.ge),
    "data.ratio_range": _pair("two numbers 0 < low <= high", _number("(0, inf)").check, operator.le),
    "data.cat_max_ratio": _number("(0, 1]"),
    "data.num_workers": _integer(0),
    "train.epochs": _integer(0),
    "train.batch_size": _integer(1),
    "train.optimizer": _choice(("sgd", "adamw")),
    "train.lr": _number("(0, inf)"),
    "train.momentum": _number("[0, 1)"),
    "train.weight_decay": _number("[0, inf)"),
    "train.poly_power": _number("(0, inf)"),
    "train.min_lr_ratio": _number("[0, 1]"),
    "train.aux_weight": _number("[0, inf)"),
    "train.class_weights": Rule("'none', 'auto' or one weight >= 0 per class, comma-separated", _is_class_weights),
    "train.ignore_index": _integer(0, 255),  # masks are uint8 PNGs
    "train.iterations": _integer(0),
    "train.batch_per_process": _integer(0),
    "train.amp": _choice(("none", "bf16", "fp16")),
    "train.channels_last": _BOOLEAN,
    "train.sync_bn": _BOOLEAN,
    "train.allow_tf32": _BOOLEAN,
    "train.cudnn_benchmark": _BOOLEAN,
    "train.eval_every_epochs": _integer(1),
    "train.checkpoint_every": _integer(1),
    "train.log_every": _integer(1),
    "train.seed": _integer(0, 2**32 - 1),  # numpy's seed range
    "train.tensorboard": _BOOLEAN,
}


def _classes_for_dataset(config: Config) -> Rule:
    """Labels ``0 .. num_classes - 1`` must leave ``train.ignore_index`` free; 0 (read the count from the classes
    file) only for the folder dataset."""
    ignore, folder = config.train.ignore_index, config.data.dataset == FOLDER
    if folder:
        allows = f"<= train.ignore_index={ignore}, the label no class may take (0: from the folder's {CLASSES_FILE})"
    else:
        allows = f">= 1 and <= train.ignore_index={ignore}, the label no class may take (0 is for data.dataset=folder)"
    return Rule(allows, lambda value: (folder or value >= 1) and value <= ignore)


def _weights_for_backbone(config: Config) -> Rule:
    """torchvision's weights fit only the ResNet of their depth with its 7x7 stem (``deep_stem=False``)."""
    depth, deep_stem = config.model.depth, config.model.deep_stem

    def fits(value: str) -> bool:
        return "_Weights." not in value or (value.startswith(f"ResNet{depth}_Weights.") and not deep_stem)

    allows = (
        f"'none', a file path or a ResNet{depth}_Weights name with model.deep_stem=false "
        "(torchvision's weights are for the 7x7 stem)"
    )
    return Rule(allows, fits)


def _split_of_dataset(config: Config) -> Rule:
    """A split that ``data.dataset`` has (any name for the folder dataset, whose splits are what its folder holds)."""
    dataset = config.data.dataset
    splits = DATASETS[dataset].splits
    return _choice(splits, f"one of the {dataset} splits") if splits else _NAME


def _sets_length_with_epochs(config: Config) -> Rule:
    """``train.iterations`` or ``train.epochs`` sets how long training runs: not both may be 0."""
    epochs = config.train.epochs
    return Rule(
        f">= 1 when train.epochs={epochs} (one of the two sets the length)", lambda value: epochs > 0 or value >= 1
    )


def _within_batch(config: Config) -> Rule:
    """A forward holds at most the global batch (0: the batch split over the processes); the trainer checks the
    rest (a multiple of it per step), which depends on the number of processes."""
    batch = config.train.batch_size
    return Rule(f"<= train.batch_size={batch} (0: the batch split over the processes)", lambda value: value <= batch)


_CONTEXT_RULES: dict[str, Callable[[Config], Rule]] = {
    "model.num_classes": _classes_for_dataset,
    "model.pretrained": _weights_for_backbone,
    "data.train_split": _split_of_dataset,
    "data.val_split": _split_of_dataset,
    "train.iterations": _sets_length_with_epochs,
    "train.batch_per_process": _within_batch,
}


def config_keys() -> list[str]:
    """Every ``section.key`` of a config, in the dataclasses' order: ``["model.num_classes", ...]``."""
    sections = typing.get_type_hints(Config)
    return [
        f"{section.name}.{key.name}"
        for section in dataclasses.fields(Config)
        if section.name != "name"
        for key in dataclasses.fields(sections[section.name])
    ]


def validate_config(config: Config) -> None:
    """Raise ``ConfigError`` at the first bad value of ``config``: each key's own rule first, then those between keys.

    The message is one line, ``section.key=value must be <what is allowed>``, e.g.
    ``train.batch_size=0 must be an integer >= 1``. A key without a rule is a ``KeyError``: every key needs one.
    """
    for key in config_keys():
        _check(config, key, _RULES[key])
    for key, rule_for in _CONTEXT_RULES.items():
        _check(config, key, rule_for(config))


def _check(config: Config, key: str, rule: Rule) -> None:
    """Raise ``ConfigError`` unless the value of ``key`` (``"section.key"``) in ``config`` passes ``rule``."""
    section, _, name = key.partition(".")
    value = getattr(getattr(config, section), name)
    if not rule.check(value):
        raise ConfigError(f"{key}={value!r} must be {rule.allows}")


def with_dataset_classes(config: Config, data_root: str | Path) -> Config:
    """``config`` with ``model.num_classes`` filled in from the folder dataset's classes file under ``data_root``
    (a copy; other datasets' configs come back as they are). A count that disagrees with the file is refused."""
    if config.data.dataset != FOLDER:
        return config
    info = dataset_info(FOLDER, data_root)
    wanted = config.model.num_classes
    if wanted not in (0, info.num_classes):
        raise ConfigError(
            f"model.num_classes={wanted} but {Path(data_root) / CLASSES_FILE} lists {info.num_classes} classes: "
            "leave model.num_classes=0 (the count of the classes file) or fix the file"
        )
    resolved = copy.deepcopy(config)
    resolved.model.num_classes = info.num_classes
    return resolved


def config_differences(saved: dict[str, typing.Any], current: dict[str, typing.Any]) -> str:
    """The ``section.key: old vs new`` pairs where two ``dataclasses.asdict`` configs differ (lists equal tuples). A
    key that ``saved`` lacks (a config saved before the key existed) counts as its default value."""
    return _differences(saved, current, dataclasses.asdict(Config(name="")), "")


def _differences(saved: dict[str, typing.Any], current: dict[str, typing.Any], defaults: dict, prefix: str) -> str:
    """:func:`config_differences` of one level, the keys named after ``prefix``, ``defaults`` that level's."""
    changed = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key, defaults.get(key)), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            inner = _differences(old, new, defaults.get(key) or {}, f"{prefix}{key}.")
            if inner:
                changed.append(inner)
        elif old != new and not (isinstance(old, list | tuple) and tuple(old) == tuple(new or ())):
            changed.append(f"{prefix}{key}: {old} vs {new}")
    return ", ".join(changed)
