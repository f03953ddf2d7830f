"""A trained DeepLabV3+ as one object: load it, segment images, save it in the Hugging Face layout.

>>> segmenter = deeplab.Segmenter.from_checkpoint("runs/demo/best.pth")  # or .from_released("voc-r50-d16")
>>> mask = segmenter.predict(image)  # (H, W) int64 class indices; image: PIL, (H, W, 3) ndarray or (3, H, W) tensor
>>> segmenter.classes.classes[mask[0, 0]], segmenter.classes.palette  # what the indices mean and their colours

``predict`` runs what ``python -m deeplab predict`` and ``evaluate`` run: the reference's test-scale resize and
normalization, the folded fast network, and the same flip, multi-scale and sliding-window options.
``save_pretrained(folder)`` writes ``model.safetensors`` (the network's weights), ``config.json`` (the config and
the classes) and a model card ``README.md``; ``from_pretrained`` reads such a folder, or a Hugging Face Hub
repository (``huggingface_hub``'s :class:`~huggingface_hub.PyTorchModelHubMixin`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from PIL import Image as PILImage
from safetensors.torch import load_file, save_file
from torch import nn

from deeplab.config import (
    FOLDER,
    Config,
    ConfigError,
    apply_override,
    config_from_dict,
    get_config,
    validate_config,
    with_dataset_classes,
)
from deeplab.data import DatasetInfo, dataset_info
from deeplab.data.transforms import eval_transforms
from deeplab.engine.evaluate import Inference, inference_model, inference_of, predict_probabilities
from deeplab.models import build_empty_model, build_model
from deeplab.models.weights import CheckpointError, load_checkpoint_dict, read_checkpoint
from deeplab.models.zoo import DEFAULT_ROOT, RELEASED
from deeplab.weights.released import resolve_checkpoint

ImageLike = Union[PILImage.Image, np.ndarray, torch.Tensor]  # noqa: UP007 (a runtime alias, for isinstance too)
WEIGHTS = "model.safetensors"

MODEL_CARD = """---
{{ card_data }}
---

# {{ config_name }}: DeepLabV3+, ResNet-{{ depth }}, output stride {{ output_stride }}

DeepLabV3+ (Chen et al., ECCV 2018, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation") segmenting images into {{ num_classes }} classes, saved by the `deeplab` package of the course
"DeepLabV3+ from the ground up".

```python
import deeplab

segmenter = deeplab.Segmenter.from_pretrained("{{ name_or_path }}")
mask = segmenter.predict(image)  # (H, W) class indices; image: a PIL image, an (H, W, 3) array or a (3, H, W) tensor
```

## Results

| mIoU (%) | what |
|---:|---|
{{ results }}

## Classes

| index | class | colour (R, G, B) |
|---:|---|---|
{{ classes }}

## Recipe

`config.json` holds the whole config (`deeplab_config`: model, data, train) and the classes; the weights are
`model.safetensors`, with the names of `deeplab.DeepLabV3Plus`'s state dict.
"""


@dataclasses.dataclass
class Trained:
    """A trained model loaded from a checkpoint: its config, the model (eval mode) and what its classes are."""

    config: Config
    model: nn.Module
    classes: DatasetInfo
    best: dict[str, float] | None = None  # a best.pth's {"miou", "iteration"}: the evaluation that kept it


def load_trained(
    checkpoint: Path, config_name: str | None, overrides: list[str], data_root: Path | None = None
) -> Trained:
    """The config stored in our checkpoint or a :meth:`Segmenter.save_pretrained` folder (or the named one, for
    sssegmentation's), the loaded model and the class names and colours (stored with the weights, else the
    dataset's; a folder dataset's need ``data_root``)."""
    folder = is_pretrained_folder(checkpoint)
    state = read_pretrained_folder(checkpoint) if folder else read_checkpoint(checkpoint)
    stored = state.get("config")
    if config_name:
        config = get_config(config_name, overrides)
        if data_root is not None:
            config = with_dataset_classes(config, data_root)
    elif stored:
        config = config_from_dict(stored)
        for override in overrides:
            apply_override(config, override)
        validate_config(config)
    else:
        raise ConfigError(f"{checkpoint} holds no config (an sssegmentation checkpoint?): pass --config NAME")
    if config.model.num_classes == 0:
        raise ConfigError(f"{config.name} takes its number of classes from a folder's classes.json: pass --data-root")
    model = build_empty_model(config)  # every tensor comes from the checkpoint, loaded strictly
    if folder:
        model.load_state_dict(state["model"])
    else:
        load_checkpoint_dict(state, model, checkpoint)  # the file is read once
    best = {key: state[key] for key in ("miou", "iteration")} if isinstance(state.get("miou"), float) else None
    return Trained(config, model.eval(), checkpoint_classes(state, config, data_root), best)


def read_pretrained_folder(folder: Path) -> dict[str, Any]:
    """A folder of :meth:`Segmenter.save_pretrained` as our checkpoints hold it: ``{"model", "config", "classes"}``."""
    values = json.loads((folder / "config.json").read_text())
    return {"model": load_file(folder / WEIGHTS), "config": values["deeplab_config"], "classes": values["classes"]}


def checkpoint_classes(state: dict[str, Any], config: Config, data_root: Path | None = None) -> DatasetInfo:
    """The class names and colours a checkpoint was trained with: stored in it (``"classes"``), or else those of its
    config's dataset (read from ``data_root`` for a folder dataset)."""
    if "classes" in state:
        return DatasetInfo.from_dict(state["classes"])
    if config.data.dataset == FOLDER and data_root is None:
        raise ConfigError("the checkpoint holds no class names: pass --data-root, the folder with its classes.json")
    return dataset_info(config.data.dataset, data_root)


def as_image_tensor(image: ImageLike) -> torch.Tensor:
    """``image`` as a ``(3, H, W)`` uint8 tensor, what the evaluation reads from files: a PIL image (any mode,
    converted to RGB), an ``(H, W, 3)`` or ``(H, W)`` uint8 array, or a ``(3, H, W)`` tensor, uint8 or float in
    [0, 1] (torchvision's conventions; rounded to uint8, so that both resize alike)."""
    if isinstance(image, PILImage.Image):
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
    if isinstance(image, np.ndarray):
        array = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) or (H, W) uint8 array, got {image.dtype} {image.shape}")
        return torch.from_numpy(array.copy()).permute(2, 0, 1)  # a copy: the caller's array may be read-only
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3:
        return image if image.dtype == torch.uint8 else (image.float() * 255).round().clamp(0, 255).to(torch.uint8)
    kind = f"tensor {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
    raise ValueError(f"expected a PIL image, an (H, W, 3) uint8 array or a (3, H, W) tensor, got a {kind}")


class Segmenter(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="deeplab",
    pipeline_tag="image-segmentation",
    tags=["deeplabv3plus", "semantic-segmentation"],
    paper_url="https://arxiv.org/abs/1802.02611",
    model_card_template=MODEL_CARD,
):
    """A trained DeepLabV3+ (``network``), its config and its classes (names and colours: ``classes``).

    ``deeplab_config`` is a config as ``dataclasses.asdict(config)`` gives it, ``classes`` as
    :meth:`DatasetInfo.to_dict` gives them; ``measured`` the mIoU measured of these weights, if any:
    ``{"miou": 0..1, "where": "what data, which iteration"}``; ``network`` the config's model, if one is at hand
    (else it is built, with random weights): use :meth:`from_checkpoint`, :meth:`from_released` or
    :meth:`from_pretrained`.
    """

    def __init__(
        self,
        deeplab_config: dict[str, Any],
        classes: dict[str, Any],
        measured: dict | None = None,
        network: nn.Module | None = None,
    ):
        super().__init__()
        self.config = config_from_dict(deeplab_config)
        self.classes = DatasetInfo.from_dict(classes)
        if self.config.model.num_classes != self.classes.num_classes:
            raise ConfigError(
                f"{self.config.name} has {self.config.model.num_classes} outputs but {self.classes.num_classes} "
                "class names: pass the classes the model was trained with"
            )
        self.measured = measured
        self.network = network if network is not None else build_model(self.config)
        self.transform = eval_transforms(scale=self.config.data.scale)  # the reference's test pipeline
        self.eval()
        self._fast: dict[tuple[torch.device, str], nn.Module] = {}  # the folded networks, by device and precision

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | os.PathLike, config_name: str | None = None, data_root: str | os.PathLike | None = None
    ) -> Segmenter:
        """A checkpoint of ours (config and classes inside; ``best.pth`` records its mIoU), a
        :meth:`save_pretrained` folder, or a checkpoint of sssegmentation's (then ``config_name`` says which config,
        e.g. ``"voc-r50-d16"``; a folder dataset's classes come from ``data_root``)."""
        path = Path(checkpoint)
        if is_pretrained_folder(path):
            return cls.from_pretrained(path)
        trained = load_trained(path, config_name, [], Path(data_root) if data_root is not None else None)
        if trained.best is None:
            return cls.from_trained(trained)
        data = trained.config.data
        where = f"{data.dataset} {data.val_split}, iteration {trained.best['iteration']} of the run that saved it"
        return cls.from_trained(trained, {"miou": trained.best["miou"], "where": where})

    @classmethod
    def from_trained(cls, trained: Trained, measured: dict | None = None) -> Segmenter:
        """The :class:`Segmenter` of a model :func:`load_trained` loaded (the model itself, not a copy)."""
        return cls(dataclasses.asdict(trained.config), trained.classes.to_dict(), measured, trained.model)

    @classmethod
    def from_released(cls, config_name: str, root: str | os.PathLike = DEFAULT_ROOT) -> Segmenter:
        """The reference's released model of ``config_name`` (one of the 12 reference configs), downloaded into
        ``root`` and verified on first use."""
        return cls.from_checkpoint(resolve_checkpoint("released", config_name, Path(root)), config_name)

    def predict(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        flip: bool = False,
        multi_scale: bool = False,
        slide: bool = False,
        amp: str = "none",
    ) -> torch.Tensor | list[torch.Tensor]:
        """Class indices ``(H, W)`` int64 for an image, at its size; a list of them for a list of images, ``(N, H,
        W)`` for an ``(N, 3, H, W)`` tensor. The options are ``evaluate``'s and ``predict``'s (``--flip``,
        ``--multi-scale``, ``--slide``, ``--amp``)."""
        return self._each(images, lambda image: self.predict_probabilities(
            image, flip=flip, multi_scale=multi_scale, slide=slide, amp=amp
        ).argmax(dim=0))  # fmt: skip

    def predict_probabilities(
        self, image: ImageLike, *, flip: bool = False, multi_scale: bool = False, slide: bool = False, amp: str = "none"
    ) -> torch.Tensor:
        """Softmax probabilities ``(C, H, W)`` float32 of one image, at its size (see :meth:`predict`)."""
        return self.infer(image, self.inference(flip=flip, multi_scale=multi_scale, slide=slide, amp=amp))

    def infer(self, image: ImageLike, inference: Inference) -> torch.Tensor:
        """Softmax probabilities ``(C, H, W)`` float32 of one image, at its size, as ``inference`` says."""
        pixels = as_image_tensor(image)
        sample = self.transform({"image": pixels, "mask": torch.zeros(pixels.shape[-2:], dtype=torch.int64)})
        device = next(self.network.parameters()).device
        batch = sample["image"].unsqueeze(0).to(device)  # (1, 3, h, w) at the test scale, normalized
        with torch.inference_mode():
            return predict_probabilities(self.runnable(inference), batch, tuple(pixels.shape[-2:]), inference)[0].cpu()

    def inference(
        self, *, flip: bool = False, multi_scale: bool = False, slide: bool = False, amp: str = "none"
    ) -> Inference:
        """The :class:`Inference` of these options; ``slide`` takes windows of the config's crop size, 2/3 overlap."""
        window = self.config.data.crop_size if slide else None
        return inference_of(flip=flip, multi_scale=multi_scale, window=window, amp=amp)

    def runnable(self, inference: Inference) -> nn.Module:
        """The network that ``inference`` runs: its folded fast copy (made once per device and precision, and made
        anew after ``train()`` or a move) or, with ``inference.fast`` off, the network itself in eval mode."""
        if not inference.fast:
            return self.network.eval()
        key = (next(self.network.parameters()).device, inference.amp)
        if key not in self._fast:
            self._fast[key] = inference_model(self.network, inference)
        return self._fast[key]

    def train(self, mode: bool = True) -> Segmenter:
        self._fast = {}  # the weights may change: fold them again when predicting
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 (nn.Module's signature)
        self._fast = {}  # .to(), .cuda(), .half(): the folded copies stay behind
        return super()._apply(fn, recurse)

    def _each(self, images: ImageLike | Sequence[ImageLike], one) -> torch.Tensor | list[torch.Tensor]:  # noqa: ANN001
        """``one(image)`` for an image, for each of a list, stacked for an ``(N, 3, H, W)`` tensor."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return torch.stack([one(image) for image in images])
        if isinstance(images, (list, tuple)):
            return [one(image) for image in images]
        return one(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, H, W)`` of normalized ``images (N, 3, H, W)`` (the network's own forward, for training
        and export)."""
        return self.network(images)

    # --- the Hugging Face layout: model.safetensors, config.json, README.md ---

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> str | None:
        """Write ``model.safetensors``, ``config.json`` and the model card ``README.md`` into ``save_directory``
        (made if missing; each file replaced whole, never left half-written). ``push_to_hub=True`` (with
        ``repo_id``, ``token``, ...: ``huggingface_hub``'s options) uploads them afterwards."""
        push, repo_id = kwargs.pop("push_to_hub", False), kwargs.pop("repo_id", None)
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        card = {"name_or_path": repo_id or folder.name, **self.card_fields(), **kwargs.pop("model_card_kwargs", {})}
        with tempfile.TemporaryDirectory(dir=folder, prefix=".saving-") as staging:
            super().save_pretrained(staging, model_card_kwargs=card, **kwargs)
            for file in Path(staging).iterdir():
                os.replace(file, folder / file.name)
        return self.push_to_hub(repo_id or folder.name, **kwargs) if push else None

    def _save_pretrained(self, save_directory: Path) -> None:
        """The network's weights, under :class:`~deeplab.DeepLabV3Plus`'s names."""
        state = {name: tensor.contiguous() for name, tensor in self.network.state_dict().items()}
        save_file(state, str(Path(save_directory) / WEIGHTS), metadata={"format": "pt"})

    @classmethod
    def _from_pretrained(
        cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None, force_download: bool,
        local_files_only: bool, token: str | bool | None, map_location: str = "cpu", strict: bool = True,
        **model_kwargs: Any,
    ) -> Segmenter:  # fmt: skip
        """Build from ``config.json``'s values (``model_kwargs``) and load ``model.safetensors`` strictly, from a
        local folder or a Hub repository."""
        path = Path(model_id) / WEIGHTS
        if not Path(model_id).is_dir():
            options = {"revision": revision, "cache_dir": cache_dir, "force_download": force_download, "token": token}
            path = Path(hf_hub_download(model_id, WEIGHTS, local_files_only=local_files_only, **options))
        elif not path.is_file():
            raise CheckpointError(f"{path} not found: a folder written by Segmenter.save_pretrained holds it")
        segmenter = cls(**model_kwargs)
        segmenter.network.load_state_dict(load_file(str(path), device=map_location), strict=strict)
        return segmenter.to(map_location)

    def card_fields(self) -> dict[str, str]:
        """What the model card says of this model: its config, results and classes."""
        config, rows = self.config, []
        if config.name in RELEASED:
            reported = RELEASED[config.name].reported_miou
            rows.append(f"| {reported:.2f} | reported by the reference (sssegmentation) for the {config.name} recipe, "
                        "single scale; not measured here |")  # fmt: skip
        if self.measured is not None:
            rows.append(f"| {100 * self.measured['miou']:.2f} | measured of these weights: {self.measured['where']} |")
        classes = [
            f"| {index} | {name} | {tuple(color)} |"
            for index, (name, color) in enumerate(zip(self.classes.classes, self.classes.palette, strict=True))
        ]
        return {
            "config_name": config.name,
            "depth": str(config.model.depth),
            "output_stride": str(config.model.output_stride),
            "num_classes": str(self.classes.num_classes),
            "results": "\n".join(rows) or "| — | not measured |",
            "classes": "\n".join(classes),
        }


def is_pretrained_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder that :meth:`Segmenter.save_pretrained` wrote."""
    return Path(path, WEIGHTS).is_file() and Path(path, "config.json").is_file()
