"""Class names and colour palettes of the datasets, indexed by the training label (``0 .. num_classes - 1``).

Colours are ``(R, G, B)`` tuples, one per class; ``VOC_PALETTE`` is the flat 256 x 3 list that PIL's
``Image.putpalette`` takes, the colour map of the PASCAL VOC devkit (``VOCdevkit/VOCcode/VOClabelcolormap.m``), which
also colours the ignore label 255 (cream, ``(224, 224, 192)``).

A folder dataset (your own images and masks) names its classes in ``classes.json`` beside its images::

    {"classes": ["background", "cat", "dog"], "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]]}

``classes`` (required) lists 1 to 255 unique, non-empty names: mask value ``k`` is ``classes[k]`` and 255 is
"ignore". ``palette`` (optional) gives one ``[R, G, B]`` (ints 0-255) per class; without it the classes take the
first colours of the VOC colour map. :func:`read_classes_file` reads and checks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchvision.datasets import Cityscapes as _TorchvisionCityscapes

Color = tuple[int, int, int]
IGNORE_INDEX = 255
CLASSES_FILE = "classes.json"
MAX_CLASSES = IGNORE_INDEX  # labels 0 .. 254; 255 is the ignore label
CLASSES_EXAMPLE = '{"classes": ["background", "cat", "dog"]}'


class DatasetError(RuntimeError):
    """Data on disk that cannot be used as it is; the message names the file and the fix."""


class ClassesFileError(DatasetError):
    """A ``classes.json`` that is missing, is not JSON, or does not list the classes as the module docstring says."""


def voc_colormap(size: int = 256) -> list[Color]:
    """The VOC devkit colour map: the bits of label ``i`` spread over the high bits of R, G and B."""
    colors = []
    for label in range(size):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors.append((r, g, b))
    return colors


def flat_palette(colors: list[Color] | tuple[Color, ...]) -> list[int]:
    """``colors`` as the flat list of 256 x 3 ints that ``PIL.Image.putpalette`` takes (unused entries black)."""
    flat = [channel for color in colors for channel in color]
    return flat + [0] * (3 * 256 - len(flat))


VOC_COLORMAP: list[Color] = voc_colormap()
VOC_PALETTE: list[int] = flat_palette(VOC_COLORMAP)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_COLORS: tuple[Color, ...] = tuple(VOC_COLORMAP[: len(VOC_CLASSES)])

# The 150 classes of the MIT Scene Parsing benchmark and their colours, as mmsegmentation and sssegmentation use them
# (mmsegmentation mmseg/datasets/ade.py; sssegmentation lists the same classes with their WordNet synonyms).
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
ADE20K_COLORS: tuple[Color, ...] = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245),
    (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82),
    (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0),
    (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112),
    (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0),
    (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
)  # fmt: skip

# The 19 evaluated Cityscapes classes in trainId order, names and colours from torchvision's table.
_CITYSCAPES_TRAIN = sorted(
    (c for c in _TorchvisionCityscapes.classes if 0 <= c.train_id < IGNORE_INDEX), key=lambda c: c.train_id
)
CITYSCAPES_CLASSES = tuple(c.name for c in _CITYSCAPES_TRAIN)
CITYSCAPES_COLORS: tuple[Color, ...] = tuple(c.color for c in _CITYSCAPES_TRAIN)

# The procedurally generated toy dataset (python -m deeplab data toy): shape identifies the class, never colour.
TOY_CLASSES = ("background", "disc", "square", "triangle", "cross", "ring")
TOY_COLORS: tuple[Color, ...] = tuple(VOC_COLORMAP[: len(TOY_CLASSES)])


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's labels mean: ``classes[k]`` is drawn in ``palette[k]`` (an ``(R, G, B)`` tuple)."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[Color, ...]
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "classes", "palette"}`` as JSON values (lists), e.g. to store in a checkpoint."""
        return {"name": self.name, "classes": list(self.classes), "palette": [list(color) for color in self.palette]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetInfo:
        """The :class:`DatasetInfo` that :meth:`to_dict` gave; :class:`ClassesFileError` if ``data`` is not one."""
        fields = _checked_fields(data, "dataset info", required=("name", "classes", "palette"), optional=())
        classes = _checked_classes(fields["classes"], "dataset info")
        return cls(str(fields["name"]), classes, _checked_palette(fields["palette"], len(classes), "dataset info"))


DATASET_INFO: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("voc", VOC_CLASSES, VOC_COLORS),
        DatasetInfo("ade20k", ADE20K_CLASSES, ADE20K_COLORS),
        DatasetInfo("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_COLORS),
        DatasetInfo("toy", TOY_CLASSES, TOY_COLORS),
    )
}


FOLDER = "folder"  # the dataset whose classes come from its own classes.json


class UnknownDatasetError(KeyError):
    """A dataset name that is not one of ``DATASET_INFO`` nor ``"folder"``."""

    def __str__(self) -> str:
        return str(self.args[0])


def dataset_info(name: str, root: str | Path | None = None) -> DatasetInfo:
    """The classes and palette of dataset ``name``: ``voc``, ``ade20k``, ``cityscapes``, ``toy``, or ``folder``,
    whose ``root/classes.json`` is read (``root`` is required for it and unused by the others)."""
    if name == FOLDER:
        if root is None:
            raise ValueError("dataset 'folder' reads its classes from ROOT/classes.json: pass root")
        return read_classes_file(Path(root) / CLASSES_FILE)
    if name not in DATASET_INFO:
        raise UnknownDatasetError(f"unknown dataset {name!r}: use one of {', '.join([*DATASET_INFO, FOLDER])}")
    return DATASET_INFO[name]


def read_classes_file(path: str | Path) -> DatasetInfo:
    """The classes and palette in ``path`` (a ``classes.json``, see the module docstring), as dataset ``"folder"``.

    Every problem raises :class:`ClassesFileError` in one line that names the file and the fix.
    """
    path = Path(path)
    data = _read_json(path)
    fields = _checked_fields(data, str(path), required=("classes",), optional=("palette",))
    classes = _checked_classes(fields["classes"], str(path))
    palette = fields.get("palette")
    colors = VOC_COLORMAP[: len(classes)] if palette is None else _checked_palette(palette, len(classes), str(path))
    return DatasetInfo(FOLDER, classes, tuple(colors))


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClassesFileError(f"{path} not found: write the class names there, e.g. {CLASSES_EXAMPLE}") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ClassesFileError(
            f"{path} cannot be read ({reason}): write it as UTF-8 JSON, e.g. {CLASSES_EXAMPLE}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ClassesFileError(
            f"{path}: invalid JSON at line {error.lineno}, column {error.colno} ({error.msg}); "
            f"fix it, e.g. {CLASSES_EXAMPLE}"
        ) from None


def _checked_fields(data: Any, source: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """``data`` if it is a JSON object with all the ``required`` keys and no keys but those and ``optional`` ones."""
    allowed = ", ".join([*required, *optional])
    if not isinstance(data, dict):
        raise ClassesFileError(f"{source}: expected a JSON object with the keys {allowed}, e.g. {CLASSES_EXAMPLE}")
    unknown = [key for key in data if key not in (*required, *optional)]
    if unknown:
        raise ClassesFileError(f"{source}: unknown key {unknown[0]!r}; use only {allowed}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ClassesFileError(f"{source}: {missing[0]!r} is missing; give it, e.g. {CLASSES_EXAMPLE}")
    return data


def _checked_classes(classes: Any, source: str) -> tuple[str, ...]:
    """``classes`` as a tuple if it is a list of 2 .. ``MAX_CLASSES`` unique non-empty names: a segmentation tells
    at least two classes apart (class 0 is usually the background)."""
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
        size = f"{len(classes)} names" if isinstance(classes, list) else type(classes).__name__
        if isinstance(classes, list) and len(classes) == 1:
            size = f'only {classes[0]!r}: name the background too, e.g. ["background", {json.dumps(classes[0])}]'
        raise ClassesFileError(f"{source}: classes must be a list of 2 to {MAX_CLASSES} names, got {size}")
    for index, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise ClassesFileError(f"{source}: class {index} is {name!r}; give every class a non-empty name")
    repeated = next((name for index, name in enumerate(classes) if name in classes[:index]), None)
    if repeated is not None:
        raise ClassesFileError(f"{source}: class name {repeated!r} appears twice; give every class its own name")
    return tuple(classes)


def _checked_palette(palette: Any, num_classes: int, source: str) -> tuple[Color, ...]:
    """``palette`` as ``(R, G, B)`` tuples if it holds one colour of three ints 0-255 per class."""
    if not isinstance(palette, list):
        raise ClassesFileError(f"{source}: palette must be a list of [R, G, B] colours, got {type(palette).__name__}")
    if len(palette) != num_classes:
        raise ClassesFileError(
            f"{source}: palette has {len(palette)} colours for {num_classes} classes; "
            "give one [R, G, B] per class or leave palette out"
        )
    for index, color in enumerate(palette):
        if not (isinstance(color, list) and len(color) == 3 and all(type(c) is int and 0 <= c <= 255 for c in color)):
            raise ClassesFileError(f"{source}: palette colour {index} is {color!r}; write it as [R, G, B], ints 0-255")
    return tuple(tuple(color) for color in palette)
