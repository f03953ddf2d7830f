"""The reference's released DeepLabV3+ checkpoints: downloaded, checked by content, recorded for evaluation.

sssegmentation published one trained checkpoint and its training log per config (deeplab.models.zoo lists them),
without checksums. For each config in --configs (default: all 12):
  1. get deeplabv3plus_resnet{50,101}os{8,16}_{voc,ade20k,cityscapes}.pth: the file you give with --archive (copied
     into ROOT), or the one in ROOT, or a download (resumable, with a progress bar) of the release asset under its
     current name, else under its name of before Nov 2023 (ending in _train);
  2. check it loads with torch.load(weights_only=True), that its classes and ResNet depth are the config's, and that
     it loads strictly into the config's network through deeplab's loader (which renames the reference's keys, 2020
     and current layouts alike);
  3. get the training log beside it the same way and check it is text with a "loss" line;
  4. record the SHA-256, size, config and layout of each file in ROOT/manifest.json.
A file in ROOT that the manifest recorded is neither downloaded nor checked again; one that changed is checked again.
A download that fails a check is deleted, and nothing unchecked enters the manifest.

Result: ROOT/deeplabv3plus_*.pth and .log, and the evaluation command for each config, printed at the end:
python -m deeplab evaluate --config NAME --checkpoint released --data-root DATA
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from deeplab.config import REFERENCE_CONFIGS, ConfigError, get_config
from deeplab.models import build_model, zoo
from deeplab.models.weights import CheckpointError, StateDict, convert_reference_state_dict, load_checkpoint
from deeplab.prepare.download import (
    PrepareError,
    Resource,
    VerificationError,
    archive_for,
    check_archive_names,
    command_parser,
    copy_into,
    fetch,
    run_main,
)
from deeplab.weights.imagenet import read_state

RELEASED_NAME = "released"  # the value of --checkpoint that names the reference's file
Check = Callable[[Path, str], str]  # check(path, fix) -> layout, or VerificationError ending with fix
NO_CHECKSUM = ""  # none is published: the files are checked by their content
DEPTH_BY_LAYER3_BLOCKS = {6: 50, 23: 101}  # ResNet-50 and -101 differ in the number of layer3 blocks only


def parse_configs(value: str) -> list[str]:
    """``"all"`` or comma-separated released config names, e.g. ``"voc-r50-d8,ade20k-r101-d16"``."""
    names = list(zoo.RELEASED) if value == "all" else [name.strip() for name in value.split(",") if name.strip()]
    if unknown := [name for name in names if name not in zoo.RELEASED]:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose all or from {', '.join(zoo.RELEASED)}")
    return list(dict.fromkeys(names))


def fitting_configs(state: StateDict) -> list[str]:
    """The reference configs with the classifier size and ResNet depth of ``state`` (our key names), e.g.
    ``["ade20k-r50-d8", "ade20k-r50-d16"]``: output strides 8 and 16 give the same shapes."""
    classifier = state.get("decoder.classifier.weight")
    depth = DEPTH_BY_LAYER3_BLOCKS.get(len({key.split(".")[2] for key in state if key.startswith("backbone.layer3.")}))
    if classifier is None:
        return []
    return [
        name
        for name, config in REFERENCE_CONFIGS.items()
        if (config.model.num_classes, config.model.depth) == (classifier.shape[0], depth)
    ]


def check_config(state: StateDict, config_name: str, path: Path, fix: str) -> None:
    """Raise :class:`VerificationError` when ``state`` (reference key names) is plainly another config's checkpoint,
    naming the configs it fits."""
    fits = fitting_configs(convert_reference_state_dict(state))
    if fits and config_name not in fits:
        theirs, ours = REFERENCE_CONFIGS[fits[0]].model, REFERENCE_CONFIGS[config_name].model
        raise VerificationError(
            f"{path} is a checkpoint for {' or '.join(fits)} ({theirs.num_classes} classes, ResNet-{theirs.depth}), "
            f"not for {config_name} ({ours.num_classes} classes, ResNet-{ours.depth}); {fix}"
        )


def verify_checkpoint(path: Path, fix: str, config_name: str) -> str:
    """Check ``path`` is ``config_name``'s released checkpoint and return its layout (``"2020"`` or ``"current"``).

    In order: a state dict under ``weights_only=True``, the config's classes and depth, one of the two layouts, and
    a strict load into the config's network (``build_model`` loads no ImageNet weights) with
    :func:`~deeplab.models.weights.load_checkpoint`. Raises :class:`VerificationError` ending with ``fix``.
    """
    state = read_state(path, fix)
    check_config(state, config_name, path, fix)
    layout = zoo.detect_layout(state)
    if layout is None:
        raise VerificationError(
            f"{path} has no {' or '.join(f'{prefix}*' for prefix in zoo.LAYOUTS)} keys, "
            f"so it is no sssegmentation DeepLabV3+ checkpoint; {fix}"
        )
    try:
        load_checkpoint(path, build_model(get_config(config_name)))
    except CheckpointError as error:
        raise VerificationError(f"{error}; {fix}") from None
    print(f"checked {path}: {layout} layout, loads strictly into {config_name}")
    return layout


def verify_log(path: Path, fix: str) -> str:
    """Check ``path`` is a training log, i.e. UTF-8 text with ``loss`` in some line; return ``zoo.LOG``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VerificationError(f"{path} is not text, so it is no training log; {fix}") from None
    if "loss" not in text:
        raise VerificationError(f"{path} has no line with 'loss' in it, so it is no training log; {fix}")
    print(f"checked {path}: a training log of {len(text.splitlines()):,} lines")
    return zoo.LOG


def obtain(resource: Resource, config_name: str, check: Check, root: Path, archive: Path | None) -> None:
    """Make ``ROOT/resource.filename`` a file that passed ``check`` and is recorded in the manifest.

    Nothing happens when the file in ROOT is the one the manifest recorded; otherwise :func:`download.fetch` gets
    it from ``archive``, ROOT, or ``resource.urls`` and runs ``check`` on it.
    """
    final, manifest = root / resource.filename, zoo.read_manifest(root)
    if resource.filename in manifest and zoo.matches(final, manifest[resource.filename]):
        print(f"found {final} (SHA-256 as recorded in {zoo.MANIFEST})")
        return
    layouts: list[str] = []  # what check found; fetch's verify callback returns nothing
    path = fetch(resource, root, archive, verify=lambda candidate, fix: layouts.append(check(candidate, fix)))
    copy_into(path, final)
    manifest[resource.filename] = zoo.file_entry(final, config_name, layouts[-1])
    zoo.write_manifest(root, manifest)


def files_of(model: zoo.ReleasedModel) -> list[tuple[Resource, Check]]:
    """The checkpoint and the training log of ``model``, each with its check."""
    return [
        (
            Resource(model.checkpoint, model.checkpoint_urls(), NO_CHECKSUM),
            functools.partial(verify_checkpoint, config_name=model.config),
        ),
        (Resource(model.log, model.log_urls(), NO_CHECKSUM), verify_log),
    ]


def prepare(args: argparse.Namespace) -> None:
    """Get, check and record the files of every requested config, then print the evaluation command of each."""
    models = [zoo.RELEASED[name] for name in args.configs]
    check_archive_names(args.archive, [resource.filename for model in models for resource, _ in files_of(model)])
    for model in models:
        for resource, check in files_of(model):
            obtain(resource, model.config, check, args.root, archive_for(args.archive, resource.filename))
    print(f"released checkpoints ready in {args.root}; evaluate with:")
    for model in models:
        print(
            f"  {model.config} (reported mIoU {model.reported_miou:.2f}%): python -m deeplab evaluate "
            f"--config {model.config} --checkpoint released --data-root DATA"
        )


def resolve_checkpoint(checkpoint: str | Path, config_name: str | None, root: Path, *, quiet: bool = False) -> Path:
    """``checkpoint`` as a path; for ``"released"`` (``--checkpoint released``), the verified released file of
    ``config_name`` in ``root``, fetched first if it is not there (with ``quiet``, without its progress lines). Later
    uses re-check the manifest's SHA-256 (:func:`deeplab.models.zoo.released_checkpoint`), so a file changed since it
    was verified is refused instead of evaluated."""
    if str(checkpoint) != RELEASED_NAME:
        return Path(checkpoint)
    if config_name not in zoo.RELEASED:
        raise ConfigError(f"--checkpoint released needs --config with a reference config: {', '.join(zoo.RELEASED)}")
    if not (root / zoo.RELEASED[config_name].checkpoint).is_file():
        fetch_released(config_name, root, quiet=quiet)
    return zoo.released_checkpoint(config_name, root)


def fetch_released(config_name: str, root: Path, *, quiet: bool = False) -> None:
    """Get, check and record the checkpoint and log of ``config_name`` in ``root``, as ``python -m deeplab weights
    released --configs NAME`` does; a failure is a :class:`CheckpointError` with its one-line reason."""
    with contextlib.ExitStack() as silence:
        if quiet:
            sink = silence.enter_context(open(os.devnull, "w"))  # noqa: SIM115 - closed by the stack
            silence.enter_context(contextlib.redirect_stdout(sink))
            silence.enter_context(contextlib.redirect_stderr(sink))
        try:
            prepare(argparse.Namespace(configs=[config_name], root=root, archive=[]))
        except PrepareError as error:
            command = f"python -m deeplab weights released --root {root} --configs {config_name}"
            raise CheckpointError(f"{error} (with `{command} --archive FILE`)") from None


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``--root``, ``--configs`` and ``--archive``, described by the module docstring."""
    parser = command_parser(__doc__, prog)
    parser.add_argument(
        "--root", type=Path, default=zoo.DEFAULT_ROOT, help="folder for the files (default: %(default)s)"
    )
    parser.add_argument(
        "--configs",
        type=parse_configs,
        default=list(zoo.RELEASED),
        metavar="all|NAME,NAME",
        help="the configs whose files to get, comma-separated (default: all 12)",
    )
    parser.add_argument(
        "--archive",
        metavar="PATH",
        action="append",
        type=Path,
        default=[],
        help="a released .pth or .log you already have, under its current name: checked, then copied into ROOT; "
        "repeat for several",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line; see the module docstring."""
    run_main(prepare, build_parser(prog), argv)
