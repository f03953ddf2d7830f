"""A small procedurally generated segmentation dataset in the PASCAL VOC layout, for lessons, tests and demos.

Every image shows 1-4 objects of five classes (disc, square, triangle, cross, ring). Like real object classes, each
has its own shape and its own kind of surface (``CLASS_TEXTURES``: dots, checks, stripes, flat, blotches, in a random
scale, angle and shade, with pixel noise) but no colour of its own: object colours are random vivid ones, so a model
has to read pattern and outline, not hue. Objects vary in size and position, stand roughly upright (tilted up to 15
degrees, like photographed things), overlap (later ones on top, each earlier one keeping at least 85 % of its area
in view) and sit on a nearly grey background with a faint texture of any kind, shading and clutter (thin lines and
small dots) that belongs to the background. A 1-pixel ignore (255) outline runs along the inside of every object's
visible boundary, a thinner version of VOC's void band (a few pixels wide, drawn over the boundary). Images are
between 64 x 64 and 320 x 320 pixels.

    python -m deeplab data toy --root data [--seed 0 --train 400 --val 100] [--layout voc|folder]

writes ROOT/toy/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png (VOC palette), ImageSets/Segmentation/
{train,val}.txt}. With ``--layout folder`` the same samples go into ROOT/toy-folder (or ``--folder-name``) in the
layout of the folder dataset: {classes.json, images/<split>/<id>.jpg, masks/<split>/<id>.png}. The same seed gives
the same files; image ``i`` of a split depends only on ``(seed, split, i)``.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.data.classes import CLASSES_FILE, IGNORE_INDEX, TOY_CLASSES, TOY_COLORS, VOC_PALETTE
from deeplab.prepare.download import command_parser

SHAPES = TOY_CLASSES[1:]  # class k draws SHAPES[k - 1]
SIZE_RANGE = (64, 320)  # image height and width, pixels
MAX_OBJECTS = 4
MIN_RADIUS = 10  # pixels
MAX_TILT = 15  # degrees an object may be rotated from upright
RADIUS_RANGE = (0.12, 0.3)  # object radius as a share of the image's shorter side
TEXTURES = ("flat", "stripes", "checks", "blotches", "dots")
CLASS_TEXTURES = {"disc": "dots", "square": "checks", "triangle": "stripes", "cross": "flat", "ring": "blotches"}
BACKGROUND_CONTRAST = (0, 25)  # how much lighter or darker (0-255) a texture's second shade is: faint on the background
OBJECT_CONTRAST = (35, 70)  # and clear on objects
OBJECT_SATURATION = (0.5, 1.0)  # HSV saturation of object colours: vivid
BACKGROUND_SATURATION = (0.0, 0.2)  # and of the background and its clutter: nearly grey
MIN_VISIBLE = 0.85  # every object keeps at least this share of its area in view
SPLITS = ("train", "val")
JPEG_QUALITY = 90
# where sample <id> of <split> goes, per layout: (image, mask) paths under the dataset folder
LAYOUTS = {
    "voc": ("JPEGImages/{id}.jpg", "SegmentationClass/{id}.png"),
    "folder": ("images/{split}/{id}.jpg", "masks/{split}/{id}.png"),
}
FOLDER_NAMES = {"voc": "toy", "folder": "toy-folder"}  # the dataset folder under --root


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixels inside ``shape`` given object coordinates ``u, v`` ``(H, W)`` (the shape spans about [-1, 1])."""
    if shape == "disc":
        return u**2 + v**2 <= 1
    if shape == "ring":
        radius = u**2 + v**2
        return (radius <= 1) & (radius >= rng.uniform(0.45, 0.6) ** 2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":  # equilateral, circumradius 1.1
        return (v >= -0.55) & (v <= 1.1 - np.sqrt(3) * np.abs(u))
    if shape == "cross":
        arm = rng.uniform(0.28, 0.38)
        return ((np.abs(u) <= 1) & (np.abs(v) <= arm)) | ((np.abs(u) <= arm) & (np.abs(v) <= 1))
    raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")


def random_color(
    rng: np.random.Generator,
    saturation: tuple[float, float],
    value: tuple[float, float],
    away_from: np.ndarray | None = None,
    distance: float = 0.0,
) -> np.ndarray:
    """An RGB colour ``(3,)`` float (0-255) of random hue with HSV saturation and value drawn from the given ranges,
    at least ``distance`` (Euclidean, 0-255 scale) from ``away_from`` when given."""
    while True:
        hsv = (rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
        color = 255 * np.array(colorsys.hsv_to_rgb(*hsv))
        if away_from is None or np.linalg.norm(color - away_from) >= distance:
            return color


def texture(
    rng: np.random.Generator,
    yy: np.ndarray,
    xx: np.ndarray,
    base: np.ndarray,
    kind: str,
    contrast: tuple[float, float] = BACKGROUND_CONTRAST,
) -> np.ndarray:
    """A ``kind`` texture (one of ``TEXTURES``) ``(H, W, 3)`` float around colour ``base``: a lighter or darker shade
    (by ``contrast``, 0-255) in a random scale and orientation, plus pixel noise."""
    height, width = yy.shape
    angle = rng.uniform(0, np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    if kind == "flat":
        weight = np.zeros((height, width))
    elif kind == "stripes":
        weight = (np.sin(along * 2 * np.pi / rng.uniform(8, 16)) > 0).astype(float)
    elif kind == "checks":
        cell = rng.uniform(6, 12)
        weight = ((np.floor(along / cell) + np.floor(across / cell)) % 2).astype(float)
    elif kind == "blotches":
        coarse = rng.uniform(0, 1, (height // 16 + 2, width // 16 + 2))
        weight = np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((width, height), Image.BILINEAR))
    elif kind == "dots":
        cell = rng.uniform(10, 16)
        offsets = (np.mod(along, cell) - cell / 2) ** 2 + (np.mod(across, cell) - cell / 2) ** 2
        weight = (offsets <= (cell / 3) ** 2).astype(float)
    else:
        raise ValueError(f"unknown texture {kind!r}: use one of {', '.join(TEXTURES)}")
    shade = rng.uniform(*contrast) * rng.choice((-1, 1))
    return base + (shade * weight)[..., None] + rng.normal(0, rng.uniform(2, 8), (height, width, 1))


def background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A textured, nearly grey background ``(H, W, 3)`` float with a shading gradient, thin lines and small dots."""
    height, width = yy.shape
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    image = texture(rng, yy, xx, random_color(rng, BACKGROUND_SATURATION, (0.2, 0.9)), kind)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (xx / width - 0.5) * np.cos(direction) + (yy / height - 0.5) * np.sin(direction)  # (H, W), -0.7..0.7
    image += ramp[..., None] * rng.uniform(-40, 40)
    for _ in range(rng.integers(1, 5)):  # thin lines
        angle, offset = rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5) * max(height, width)
        distance = (xx - width / 2) * np.sin(angle) - (yy - height / 2) * np.cos(angle) - offset
        image[np.abs(distance) <= rng.uniform(0.5, 1.0)] = random_color(rng, BACKGROUND_SATURATION, (0, 1))
    for _ in range(rng.integers(0, 9)):  # dots
        cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(1, 2.5)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = random_color(rng, BACKGROUND_SATURATION, (0, 1))
    return image


def place_object(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, instance: np.ndarray, areas: Sequence[int]
) -> tuple[int, np.ndarray] | None:
    """A random object ``(class, inside (H, W) bool)`` on top of ``instance`` ``(H, W)`` (object ``k`` of full area
    ``areas[k - 1]`` where ``instance == k``) that leaves each earlier object ``MIN_VISIBLE`` in view, or ``None``."""
    height, width = yy.shape
    side = min(height, width)
    for _ in range(10):
        cls = int(rng.integers(1, len(TOY_CLASSES)))
        radius = max(rng.uniform(*RADIUS_RANGE) * side, MIN_RADIUS)
        cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
        angle = np.deg2rad(rng.uniform(-MAX_TILT, MAX_TILT))
        dy, dx = (yy - cy) / radius, (xx - cx) / radius
        u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
        inside = shape_mask(SHAPES[cls - 1], u, v, rng)
        if inside.sum() < 64:
            continue
        visible = np.bincount(instance.ravel(), minlength=MAX_OBJECTS + 1)
        left = visible - np.bincount(instance[inside], minlength=visible.size)
        if np.all(left[1 : len(areas) + 1] >= MIN_VISIBLE * np.asarray(areas)):
            return cls, inside
    return None


def render_sample(
    rng: np.random.Generator, height: int | None = None, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One image ``(H, W, 3)`` uint8 and its class mask ``(H, W)`` uint8 (0 background, 1-5 shapes, 255 ignore)."""
    height = height or int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1))
    width = width or int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = background(rng, yy, xx)
    instance = np.zeros((height, width), np.int64)  # which object (1, 2, ...) is on top at each pixel
    classes, areas = [0], []  # class of each object (0: background) and its full area in pixels
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        placed = place_object(rng, yy, xx, instance, areas)
        if placed is None:
            continue
        cls, inside = placed
        instance[inside] = len(classes)
        classes.append(cls)
        areas.append(int(inside.sum()))
        color = random_color(rng, OBJECT_SATURATION, (0.45, 1.0), away_from=image[inside].mean(axis=0), distance=100)
        box = bounding_box(inside)
        surface = texture(rng, yy[box], xx[box], color, CLASS_TEXTURES[SHAPES[cls - 1]], OBJECT_CONTRAST)
        image[box][inside[box]] = surface[inside[box]]
    mask = np.asarray(classes, np.uint8)[instance]
    mask[object_outline(instance)] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), mask


def bounding_box(inside: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns that hold the ``True`` pixels of ``inside`` ``(H, W)``."""
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def object_outline(instance: np.ndarray) -> np.ndarray:
    """Object pixels ``(H, W)`` with a 4-neighbour that belongs to another object or the background."""
    padded = np.pad(instance, 1, mode="edge")
    center = padded[1:-1, 1:-1]
    neighbours = (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
    return (center > 0) & np.logical_or.reduce([n != center for n in neighbours])


def save_sample(image: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """Write ``image`` ``(H, W, 3)`` as JPEG and ``mask`` ``(H, W)`` as a VOC-palette PNG, folders made."""
    for path in (image_path, mask_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path, quality=JPEG_QUALITY)
    png = Image.fromarray(mask)  # mode "L"; putpalette makes it "P" with the values unchanged
    png.putpalette(VOC_PALETTE)
    png.save(mask_path)


def write_index(base: Path, layout: str, ids: dict[str, list[str]]) -> None:
    """What tells a reader the splits and classes: VOC's split lists, or the folder dataset's ``classes.json``."""
    if layout == "voc":
        lists = base / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True, exist_ok=True)
        for split, split_ids in ids.items():
            (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
    else:
        classes = {"classes": list(TOY_CLASSES), "palette": [list(color) for color in TOY_COLORS]}
        (base / CLASSES_FILE).write_text(json.dumps(classes) + "\n")


def make_toy(
    root: str | Path, seed: int = 0, train: int = 400, val: int = 100, layout: str = "voc", name: str | None = None
) -> Path:
    """Generate the toy dataset into ``root/<name>`` (default ``toy``, or ``toy-folder`` for ``layout="folder"``)
    in ``layout`` (a key of ``LAYOUTS``) and return that folder."""
    base = Path(root) / (name or FOLDER_NAMES[layout])
    image_path, mask_path = LAYOUTS[layout]
    ids = {}
    for split_index, (split, count) in enumerate(zip(SPLITS, (train, val), strict=True)):
        ids[split] = [f"{split}_{i:05d}" for i in range(count)]
        for i, sample_id in enumerate(ids[split]):
            paths = (base / pattern.format(split=split, id=sample_id) for pattern in (image_path, mask_path))
            save_sample(*render_sample(np.random.default_rng([seed, split_index, i])), *paths)
    write_index(base, layout, ids)
    return base


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line; see the module docstring."""
    parser = command_parser(__doc__, prog)
    parser.add_argument("--root", type=Path, default=Path("data"), help="data folder (default: data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=400, help="training images (default: 400)")
    parser.add_argument("--val", type=int, default=100, help="validation images (default: 100)")
    parser.add_argument("--layout", choices=LAYOUTS, default="voc", help="VOC's or the folder dataset's (default: voc)")
    parser.add_argument("--folder-name", help="folder under --root for --layout folder (default: toy-folder)")
    args = parser.parse_args(argv)
    if args.train < 0 or args.val < 0:
        parser.error("--train and --val must be >= 0")
    if args.folder_name is not None and args.layout == "voc":
        parser.error("--folder-name is for --layout folder; the toy dataset in the VOC layout is always ROOT/toy")
    base = make_toy(args.root, args.seed, args.train, args.val, args.layout, args.folder_name)
    print(
        f"toy dataset ready in {base}: {args.train} train and {args.val} val images, classes {', '.join(TOY_CLASSES)}"
    )
