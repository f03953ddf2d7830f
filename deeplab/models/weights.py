"""Checkpoints: atomic saving, safe loading (``weights_only=True``), and the reference toolbox's key names.

Two outside formats load into our modules by renaming keys:
- sssegmentation's DeepLabV3+ checkpoints (``{"model": state_dict}`` with top-level modules ``backbone_net``,
  ``aspp_net``, ``shortcut``, ``decoder``, ``auxiliary_decoder``);
- open-mmlab's ImageNet ``resnet*_v1c`` backbones, whose names already match our deep-stem backbone.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]
SHOWN = 4  # tensor names a one-line report shows before it counts the rest


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, or does not fit the model."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.

    A crash mid-write leaves the previous file intact: readers see the old checkpoint or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Save ``{"model": state_dict, **extra}`` atomically; ``extra`` holds tensors and plain Python values."""
    return atomic_save({"model": _unwrap(model).state_dict(), **extra}, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file on the CPU with ``weights_only=True``, explaining every way that can fail."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found: check the path")
    if not _looks_like_torch_save(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (no torch.save file): check the path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values, refused by weights_only "
            f"loading ({str(error).splitlines()[0]}); re-save it as a state_dict"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({str(error).splitlines()[0]}); download or save it again"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict of tensors")
    return dict(checkpoint)


def _looks_like_torch_save(path: Path) -> bool:
    """Whether ``path`` begins as ``torch.save`` files do: a zip archive (``PK``), or before torch 1.6 a pickle
    protocol marker (byte 0x80). A truncated file still does; that is found when loading it."""
    with path.open("rb") as file:
        start = file.read(2)
    return start.startswith((b"PK", b"\x80"))


def state_dict_of(checkpoint: Mapping[str, Any]) -> StateDict:
    """The model's tensors in a checkpoint: under ``"model"`` or ``"state_dict"``, or the dict itself.

    A ``"module."`` prefix left by ``DistributedDataParallel`` is removed.
    """
    for key in ("model", "state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


# sssegmentation name -> our name, tried in order; groups keep block and layer indices.
_REFERENCE_RENAMES = [
    (r"^backbone_net\.", "backbone."),
    (r"^aspp_net\.parallel_branches\.0\.", "aspp.branches.0."),
    (r"^aspp_net\.parallel_branches\.(\d)\.depthwise_conv\.", r"aspp.branches.\1.depthwise.0."),
    (r"^aspp_net\.parallel_branches\.(\d)\.depthwise_bn\.", r"aspp.branches.\1.depthwise.1."),
    (r"^aspp_net\.parallel_branches\.(\d)\.pointwise_conv\.", r"aspp.branches.\1.pointwise.0."),
    (r"^aspp_net\.parallel_branches\.(\d)\.pointwise_bn\.", r"aspp.branches.\1.pointwise.1."),
    (r"^aspp_net\.global_branch\.1\.", "aspp.image_pooling.conv.0."),
    (r"^aspp_net\.global_branch\.2\.", "aspp.image_pooling.conv.1."),
    (r"^aspp_net\.(bottleneck|fuse_layer)\.", "aspp.fuse."),
    (r"^shortcut\.", "decoder.shortcut."),
    (r"^decoder\.(\d)\.depthwise_conv\.", r"decoder.refine.\1.depthwise.0."),
    (r"^decoder\.(\d)\.depthwise_bn\.", r"decoder.refine.\1.depthwise.1."),
    (r"^decoder\.(\d)\.pointwise_conv\.", r"decoder.refine.\1.pointwise.0."),
    (r"^decoder\.(\d)\.pointwise_bn\.", r"decoder.refine.\1.pointwise.1."),
    (r"^decoder\.3\.", "decoder.classifier."),
    (r"^auxiliary_decoder\.0\.", "aux_head.0.0."),
    (r"^auxiliary_decoder\.1\.", "aux_head.0.1."),
    (r"^auxiliary_decoder\.4\.", "aux_head.2."),
]


def is_reference_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` uses sssegmentation's module names."""
    return any(key.startswith(("backbone_net.", "aspp_net.")) for key in state)


def convert_reference_state_dict(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename an sssegmentation DeepLabV3+ state_dict to our module names; unknown keys are kept as they are."""
    return {_rename(key): value for key, value in state.items()}


def _rename(key: str) -> str:
    for pattern, replacement in _REFERENCE_RENAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Load our checkpoint or an sssegmentation one into ``model``; returns the whole checkpoint dict.

    Raises ``CheckpointError`` naming the mismatched keys when the checkpoint is for another architecture or
    number of classes.
    """
    checkpoint = read_checkpoint(path)
    load_checkpoint_dict(checkpoint, model, Path(path))
    return checkpoint


def load_checkpoint_dict(checkpoint: dict[str, Any], model: nn.Module, source: Path) -> None:
    """:func:`load_checkpoint` of a checkpoint already read from ``source`` (named in the errors)."""
    state = state_dict_of(checkpoint)
    if is_reference_state_dict(state):
        state = convert_reference_state_dict(state)
    load_state_dict_checked(_unwrap(model), state, source=source)


@dataclass(frozen=True)
class InitReport:
    """What :func:`load_fitting` did, by tensor name: ``loaded`` from the checkpoint; ``new`` (the model's, left as
    initialised, with the reason: absent, or ``"(6, 512, 1, 1) vs (21, 512, 1, 1)"``: model vs checkpoint shape);
    ``unused``, the checkpoint's tensors the model has no place for."""

    source: str
    loaded: list[str]
    new: dict[str, str]
    unused: list[str]

    def summary(self) -> str:
        """One line for the run log: counts, and the first new tensors by name (the rest counted by module; all of
        them are in ``to_dict``)."""
        named = [f"{key} ({why})" for key, why in self.new.items()]
        new = ", ".join(named[:SHOWN]) or "none"
        if len(named) > SHOWN:
            modules = collections.Counter(key.partition(".")[0] for key in list(self.new)[SHOWN:])
            counts = ", ".join(f"{module} {count}" for module, count in modules.items())
            new += f", ... and {len(named) - SHOWN} more ({counts}; all in init_from.json)"
        return (
            f"model.init_from {self.source}: loaded {len(self.loaded)} of {len(self.loaded) + len(self.new)} "
            f"tensors; new (initialised afresh) {len(self.new)}: {new}; unused from the checkpoint "
            f"{len(self.unused)}{': ' + _shorten(self.unused) if self.unused else ''}"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_fitting(model: nn.Module, path: str | os.PathLike, min_loaded: float = 0.0) -> InitReport:
    """Start ``model`` from every tensor of the checkpoint at ``path`` whose name and shape fit: fine-tuning. A
    checkpoint that would give less than ``min_loaded`` of the model's weights (by number) is refused.

    The checkpoint may be ours, sssegmentation's (renamed) or an ImageNet backbone alone (open-mmlab's V1c or
    torchvision's ResNet: names without a ``backbone.`` prefix get one, ``fc.*`` is dropped). What does not fit,
    typically the classifiers ``decoder.classifier`` and ``aux_head.2`` for another number of classes, keeps the
    model's fresh initialisation. A checkpoint of which nothing fits is a :class:`CheckpointError`.
    """
    module = _unwrap(model)
    state = state_dict_of(read_checkpoint(path))
    if is_reference_state_dict(state):
        state = convert_reference_state_dict(state)
    state = _as_model_names(state, {key.partition(".")[0] for key in module.state_dict()})
    expected = module.state_dict()
    fits = {key: value for key, value in state.items() if key in expected and value.shape == expected[key].shape}
    new = {
        key: "absent" if key not in state else f"{tuple(value.shape)} vs {tuple(state[key].shape)}"
        for key, value in expected.items()
        if key not in fits
    }
    if not fits:
        raise CheckpointError(
            f"{path}: no tensor fits this model by name and shape (model.init_from): pass a DeepLabV3+ or ImageNet "
            "ResNet checkpoint of the same depth and stem"
        )
    share = sum(value.numel() for value in fits.values()) / sum(value.numel() for value in expected.values())
    if share < min_loaded:
        raise CheckpointError(
            f"{path} would give only {share:.1%} of the model's weights ({len(fits)} of {len(expected)} tensors fit "
            f"by name and shape), less than model.init_min_loaded={min_loaded:g}: it is not a checkpoint of this "
            "network; pass a DeepLabV3+ or ImageNet ResNet checkpoint of the same depth and stem, or lower "
            "model.init_min_loaded"
        )
    module.load_state_dict(fits, strict=False)
    unused = [key for key in state if key not in expected]
    return InitReport(str(path), list(fits), new, unused)


def _as_model_names(state: StateDict, modules: set[str]) -> StateDict:
    """``state`` with ImageNet backbone names (``conv1.weight``, ``layer1.0...``) moved under ``backbone.``."""
    if any(key.partition(".")[0] in modules for key in state):
        return state
    return {f"backbone.{key}": value for key, value in state.items() if not key.startswith("fc.")}


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Load ImageNet weights (e.g. open-mmlab ``resnet50_v1c-2cccc1ad.pth``) into a backbone; ``fc.*`` is dropped.

    BatchNorm step counters (``num_batches_tracked``), which files saved by older PyTorch lack, keep the backbone's.
    """
    state = state_dict_of(read_checkpoint(require_backbone_weights(path)))
    state = {key.removeprefix("backbone."): value for key, value in state.items() if not key.startswith("fc.")}
    counters = {key: value for key, value in backbone.state_dict().items() if key.endswith("num_batches_tracked")}
    load_state_dict_checked(backbone, {**counters, **state}, source=Path(path))


def require_backbone_weights(path: str | os.PathLike) -> Path:
    """``path`` if it is a file; otherwise a one-line ``CheckpointError`` saying how to get the ImageNet weights."""
    if not Path(path).is_file():
        raise CheckpointError(
            f"ImageNet backbone weights {path} not found (model.pretrained, relative to {Path.cwd()}): get them "
            "with `python -m deeplab weights imagenet --root weights`, or train from scratch with "
            "--set model.pretrained=none"
        )
    return Path(path)


def load_state_dict_checked(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: Path) -> None:
    """``module.load_state_dict(state)``, or one ``CheckpointError`` line naming every key that does not fit."""
    expected = module.state_dict()
    problems = []
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            problems.append(f"{len(keys)} {label}: {_shorten(keys)}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit this model ({'; '.join(problems)}): build the model with the config the "
            "checkpoint was trained with (num_classes, depth, deep_stem, aux_head)"
        )
    module.load_state_dict(state)


def _shorten(keys: list[str], limit: int = SHOWN) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, ... (+{len(keys) - limit} more)"


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` or ``torch.compile`` wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)
