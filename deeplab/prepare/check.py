"""Check a folder dataset (your own images and masks, ``deeplab.data.FolderDataset``) before any training.

    python -m deeplab data check DIR [--out REPORT_DIR] [--overlays N] [--convert-rgb]

Reads every file of DIR once and reports, where training would stop at the first problem, all of them:

- ``classes.json``: its problem, or the number of classes;
- per split: the pairs, images without a mask and masks without an image (the first few named, and the count);
- files that cannot be decoded, masks with 3 or 4 channels, masks whose size differs from their image's, and mask
  values outside ``0 .. K - 1`` and 255 (file and values);
- the class balance per split: each class's share of the labelled pixels and the number of images holding it, and
  the share of ignored pixels; warnings for classes absent from a split, masks that are all "ignore", and masks that
  look like a binary task written the wrong way (only 0 and 255: 255 means ignore).

It writes REPORT_DIR/report.md (default ``runs/check_folder/<DIR name>``) with the tables and
REPORT_DIR/overlays.png with N samples (default 6), each mask drawn over its image in the classes' colours.

``--convert-rgb`` rewrites masks saved as RGB(A) colour images in place as palette PNGs of class indices: a pixel of
``palette[k]`` (from ``classes.json``) becomes ``k`` and VOC's ignore colour (224, 224, 192) becomes 255. A mask with
any other colour is left as it is, with an error naming it and the colour: no colour becomes a class by guess.

Exit status 0 when there are no errors (warnings allowed), 1 otherwise; every error is one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from deeplab.config import FOLDER_CONFIGS
from deeplab.data.classes import (
    CLASSES_FILE,
    IGNORE_INDEX,
    VOC_COLORMAP,
    ClassesFileError,
    Color,
    DatasetInfo,
    read_classes_file,
)
from deeplab.data.datasets import (
    CorruptSampleError,
    DatasetError,
    FolderDataset,
    FolderSplit,
    SampleFiles,
    read_image,
    read_mask_file,
    scan_folder_split,
    write_mask_file,
)
from deeplab.paths import OutputError, atomic_write, output_folder
from deeplab.prepare.download import command_parser
from deeplab.viz import colorize_mask, overlay

SHOWN = 3  # files named per problem
THUMBNAIL = 320  # longest side, pixels, of the samples drawn in overlays.png
IGNORE_COLOR: Color = VOC_COLORMAP[IGNORE_INDEX]  # (224, 224, 192)


@dataclass
class SplitReport:
    """One split: its pairs and, over those read without error, the pixels and images of each class."""

    name: str
    pairs: int
    pixels: torch.Tensor  # (K,) int64: labelled pixels of each class
    images: torch.Tensor  # (K,) int64: masks holding each class
    read: int = 0  # pairs read without error
    ignored: int = 0  # pixels of value 255
    total: int = 0  # pixels of the masks read
    all_ignored: list[str] = field(default_factory=list)  # masks holding nothing but 255

    @classmethod
    def empty(cls, name: str, pairs: int, num_classes: int) -> SplitReport:
        zeros = torch.zeros(num_classes, dtype=torch.int64)
        return cls(name, pairs, pixels=zeros, images=zeros.clone())

    def add(self, labels: torch.Tensor, mask: Path) -> None:
        """Count the class mask ``labels`` ``(H, W)`` of the file ``mask``."""
        counts = torch.bincount(labels.flatten(), minlength=IGNORE_INDEX + 1)  # (256,)
        num_classes = len(self.pixels)
        self.pixels += counts[:num_classes]
        self.images += counts[:num_classes] > 0
        self.read += 1
        self.ignored += int(counts[IGNORE_INDEX])
        self.total += labels.numel()
        if counts[IGNORE_INDEX] == labels.numel():
            self.all_ignored.append(str(mask))

    def shares(self) -> torch.Tensor:
        """``(K,)`` float: each class's share of the labelled pixels (zeros when none are labelled)."""
        return self.pixels / max(int(self.pixels.sum()), 1)


@dataclass
class FolderReport:
    """What :func:`check_folder` found: ``errors`` (training would stop on each), ``warnings``, and per split the
    counts and class balance; ``samples`` ``(title, image (3, h, w) uint8, labels (h, w))`` are for the overlays."""

    root: Path
    info: DatasetInfo | None = None
    splits: list[SplitReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    converted: list[Path] = field(default_factory=list)
    samples: list[tuple[str, torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def tables(self) -> str:
        """The classes, the splits and the class balance of each split as markdown."""
        if self.info is None:
            lines = [f"{CLASSES_FILE}: not usable (see the errors)", ""]
        else:
            lines = [f"{CLASSES_FILE}: {self.info.num_classes} classes ({', '.join(self.info.classes)})", ""]
        lines += ["| split | pairs | read | ignored pixels |", "|---|---:|---:|---:|"]
        lines += [f"| {s.name} | {s.pairs} | {s.read} | {s.ignored / max(s.total, 1):.1%} |" for s in self.splits]
        for split in self.splits if self.info is not None else ():
            lines += ["", f"Class balance of {split.name} ({split.read} masks):", ""]
            lines += ["| class | share of labelled pixels | images |", "|---|---:|---:|"]
            rows = zip(self.info.classes, split.shares().tolist(), split.images.tolist(), strict=True)
            lines += [f"| {name} | {share:.1%} | {images} |" for name, share, images in rows]
        return "\n".join(lines)

    def markdown(self) -> str:
        """The whole report as markdown: the tables, the converted masks, the errors and the warnings."""
        sections = [f"# Check of {self.root}", self.tables()]
        for title, lines in (
            ("Converted to palette PNGs", self.converted),
            ("Errors", self.errors),
            ("Warnings", self.warnings),
        ):
            if lines:
                sections.append(f"## {title} ({len(lines)})\n\n" + "\n".join(f"- {line}" for line in lines))
        return "\n\n".join(sections) + "\n"


class _CompletePairs(FolderDataset):
    """The complete pairs of one split, read with the folder dataset's own checks (the unpaired files are reported
    apart, from the same :class:`FolderSplit`)."""

    def __init__(self, root: Path, found: FolderSplit) -> None:
        self.found = found
        super().__init__(root, found.name)

    def list_samples(self) -> list[SampleFiles]:
        return list(self.found.pairs)


def check_folder(
    root: str | Path, *, overlays: int = 6, convert_rgb: bool = False, progress: bool = True
) -> FolderReport:
    """Check the folder dataset ``root``, reading every file once; keep ``overlays`` samples for the picture and,
    with ``convert_rgb``, rewrite RGB masks as palette PNGs of class indices (see the module docstring)."""
    report = FolderReport(Path(root))
    if not report.root.is_dir():
        report.errors.append(f"{report.root} is not a folder: pass the folder holding {CLASSES_FILE}, images/, masks/")
        return report
    try:
        report.info = read_classes_file(report.root / CLASSES_FILE)
    except ClassesFileError as error:
        report.errors.append(str(error))
    found = _scan_splits(report.root, report.errors)
    report.warnings += config_warnings(found)
    if report.info is None:
        report.splits = [SplitReport.empty(split.name, len(split.pairs), 0) for split in found]
        report.warnings.append(f"pixels not checked: fix {report.root / CLASSES_FILE} first")
        return report
    _read_pairs(report, found, overlays, convert_rgb, progress)
    report.warnings += balance_warnings(report.splits, report.info)
    return report


def config_warnings(found: list[FolderSplit]) -> list[str]:
    """What ``train --config folder-*`` refuses on these splits with the configs' own settings: a missing training
    or validation split, and fewer training images than one global batch."""
    config = next(iter(FOLDER_CONFIGS.values()))  # the four folder configs share their data and batch settings
    data, batch = config.data, config.train.batch_size
    images = {split.name: len(split.pairs) for split in found}
    warnings = [
        f"no split {split!r}: the folder-* configs use {key}={split}; add it, or train with --set {key}=NAME"
        for key, split in (("data.train_split", data.train_split), ("data.val_split", data.val_split))
        if split not in images
    ]
    if 0 < images.get(data.train_split, 0) < batch:
        warnings.append(
            f"{images[data.train_split]} training images, fewer than the folder-* configs' global batch of {batch}: "
            f"train with --set train.batch_size=N, N at most {images[data.train_split]}"
        )
    return warnings


def _scan_splits(root: Path, errors: list[str]) -> list[FolderSplit]:
    """Every split of ``root`` as found on disk; its problems (and a split without pairs) go into ``errors``."""
    try:
        found = [scan_folder_split(root, split) for split in FolderDataset.available_splits(root)]
    except DatasetError as error:
        errors.append(str(error))
        return []
    for split in found:
        errors += [problem.message(SHOWN) for problem in split.problems]
        if not split.pairs and not split.problems:
            errors.append(f"split {split.name!r} of {root} has no image and mask pairs: add some or remove the split")
    return found


def _read_pairs(
    report: FolderReport, found: list[FolderSplit], overlays: int, convert_rgb: bool, progress: bool
) -> None:
    """Read every complete pair into ``report``: its split's counts, the errors, and the samples to draw."""
    counts = {split.name: SplitReport.empty(split.name, len(split.pairs), report.info.num_classes) for split in found}
    report.splits = list(counts.values())
    readers = {split.name: _CompletePairs(report.root, split) for split in found if split.pairs}
    pairs = [(split.name, files) for split in found for files in split.pairs]
    drawn = set(torch.linspace(0, len(pairs) - 1, min(overlays, len(pairs))).round().long().tolist())
    converted = report.converted if convert_rgb else None
    for index, (split, files) in enumerate(tqdm(pairs, unit="pair", desc="check", disable=not progress)):
        try:
            image, labels = read_pair(readers[split], files, converted)
        except CorruptSampleError as error:
            report.errors.append(str(error))
            continue
        counts[split].add(labels, files.mask)
        if index in drawn:
            report.samples.append((f"{split}/{files.id}", *thumbnail(image, labels)))


def read_pair(
    reader: FolderDataset, files: SampleFiles, converted: list[Path] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image ``(3, H, W)`` uint8 and class mask ``(H, W)`` int64 of ``files``, checked as the dataset checks
    them; with a ``converted`` list, an RGB(A) mask is first rewritten as a palette PNG and appended to it."""
    image = read_image(files.image, hint=reader.fix_hint("image"))
    raw = read_mask_file(files.mask, hint=reader.fix_hint("image"))  # (C, H, W) uint8
    if converted is not None and raw.shape[0] in (3, 4):
        raw = rgb_to_indices(raw[:3], reader.palette, files.mask)
        write_mask_file(raw[0], reader.palette, files.mask)
        converted.append(files.mask)
    return image, reader.mask_labels(raw, files, tuple(image.shape[-2:]))


def rgb_to_indices(rgb: torch.Tensor, palette: Sequence[Color], path: Path) -> torch.Tensor:
    """The class indices ``(1, H, W)`` uint8 of a colour mask ``rgb`` ``(3, H, W)`` uint8: ``palette[k]`` -> ``k``,
    the ignore colour -> 255; :class:`CorruptSampleError` naming ``path`` for any other colour or shared colours."""
    shared = [color for k, color in enumerate(palette) if color in palette[:k]]
    if shared:
        raise CorruptSampleError(
            f"{path}: cannot convert colours, {CLASSES_FILE} gives {shared[0]} to two classes; give each its own colour"
        )
    lookup = {_code(color): k for k, color in enumerate(palette)}
    lookup.setdefault(_code(IGNORE_COLOR), IGNORE_INDEX)
    codes = (rgb[0].int() << 16) | (rgb[1].int() << 8) | rgb[2].int()  # (H, W): one int per colour
    colors, inverse = torch.unique(codes, return_inverse=True)
    unknown = [code for code in colors.tolist() if code not in lookup]
    if unknown:
        shown = ", ".join(str(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in unknown[:SHOWN])
        raise CorruptSampleError(
            f"{path}: colour {shown} is no class colour of {CLASSES_FILE} nor the ignore colour {IGNORE_COLOR}; "
            "fix the mask or the palette (nothing was written)"
        )
    indices = torch.tensor([lookup[code] for code in colors.tolist()], dtype=torch.uint8)  # (colours,)
    return indices[inverse][None]


def _code(color: Color) -> int:
    return (color[0] << 16) | (color[1] << 8) | color[2]


def thumbnail(image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` ``(3, H, W)`` and ``labels`` ``(H, W)`` scaled down together to at most ``THUMBNAIL`` pixels a side."""
    height, width = labels.shape
    scale = THUMBNAIL / max(height, width)
    if scale >= 1.0:
        return image, labels
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    return F.resize(image, size, antialias=True), F.resize(labels[None], size, InterpolationMode.NEAREST)[0]


def balance_warnings(splits: Sequence[SplitReport], info: DatasetInfo) -> list[str]:
    """Warnings on the class balance: classes absent from a split, masks all "ignore", and the binary pitfall."""
    warnings = []
    for split in (s for s in splits if s.read):
        absent = [name for name, images in zip(info.classes, split.images.tolist(), strict=True) if not images]
        if absent:
            warnings.append(
                f"split {split.name!r}: no pixels of {len(absent)} of the {info.num_classes} classes: "
                f"{', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''}"
            )
        if split.all_ignored:
            warnings.append(
                f"split {split.name!r}: {len(split.all_ignored)} of {split.read} masks are all ignore (255), e.g. "
                f"{', '.join(split.all_ignored[:SHOWN])}: they teach nothing; check them"
            )
    return warnings + binary_pitfall(splits, info)


def binary_pitfall(splits: Sequence[SplitReport], info: DatasetInfo) -> list[str]:
    """A warning when the masks look like a binary task written the wrong way."""
    seen = {k for split in splits for k in split.pixels.nonzero().flatten().tolist()}
    ignored = any(split.ignored for split in splits)
    fix = "a binary task writes 0 (background) and 1 (object) with 2 classes in classes.json"
    if seen and seen <= {0} and ignored:
        return [f"masks hold only 0 and {IGNORE_INDEX}: {IGNORE_INDEX} means ignore, so no object is learned; {fix}"]
    if seen and seen <= {0, 1} and info.num_classes > 2:
        return [f"masks hold only 0 and 1 but {CLASSES_FILE} lists {info.num_classes} classes; {fix}"]
    return []


def overlay_figure(samples: Sequence[tuple[str, torch.Tensor, torch.Tensor]], info: DatasetInfo) -> Figure:
    """One row per sample ``(title, image (3, H, W) uint8, labels (H, W))``: the image, its mask in the classes'
    colours (ignored pixels cream), and the mask over the image, to see that they align; a legend names the classes
    shown in their colours, which the mask panel shows unmixed."""
    figure = Figure(figsize=(9, 3 * len(samples) + 0.6), layout="constrained")
    grid = figure.subplots(len(samples), 3, squeeze=False)
    names = ("mask", "mask over image")
    for row, (title, image, labels) in zip(grid, samples, strict=True):
        pictures = (image, colorize_mask(labels, info.palette), overlay(image, labels, info.palette))
        for axes, picture, name in zip(row, pictures, (title, *names), strict=True):
            axes.imshow(picture.permute(1, 2, 0).numpy())
            axes.set_title(name, fontsize=9)
            axes.set_axis_off()
    shown = sorted({k for _, _, labels in samples for k in labels.unique().tolist() if k != IGNORE_INDEX})
    handles = [Patch(color=[c / 255 for c in info.palette[k]], label=info.classes[k]) for k in shown]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8)
    return figure


def write_report(report: FolderReport, out: Path) -> list[Path]:
    """Write ``out/report.md`` and (with samples) ``out/overlays.png``; return the files written."""
    folder = output_folder(out, "--out")
    written = [folder / "report.md"]
    atomic_write(written[0], lambda path: path.write_text(report.markdown()))
    if report.samples and report.info is not None:
        written.append(folder / "overlays.png")
        figure = overlay_figure(report.samples, report.info)
        atomic_write(written[1], lambda path: figure.savefig(path, format="png", dpi=100))
    return written


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command line; see the module docstring. Returns the exit status."""
    parser = command_parser(__doc__, prog)
    parser.add_argument("root", type=Path, metavar="DIR", help="the folder dataset (classes.json, images/, masks/)")
    parser.add_argument(
        "--out", type=Path, help="folder for report.md and overlays.png (default: runs/check_folder/<DIR name>)"
    )
    parser.add_argument("--overlays", type=int, default=6, help="samples drawn in overlays.png (default: 6)")
    parser.add_argument(
        "--convert-rgb", action="store_true", help="rewrite RGB colour masks as palette PNGs of class indices"
    )
    args = parser.parse_args(argv)
    if args.overlays < 0:
        parser.error("--overlays must be >= 0")
    report = check_folder(args.root, overlays=args.overlays, convert_rgb=args.convert_rgb)
    print(report.tables())
    for line in (
        *(f"converted: {path}" for path in report.converted),
        *(f"error: {e}" for e in report.errors),
        *(f"warning: {w}" for w in report.warnings),
    ):
        print(line)
    try:
        written = write_report(report, args.out or Path("runs") / "check_folder" / args.root.resolve().name)
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    verdict = "no errors" if report.ok else f"{len(report.errors)} errors: fix them before training"
    print(f"{verdict}, {len(report.warnings)} warnings; wrote {', '.join(map(str, written))}")
    return 0 if report.ok else 1
