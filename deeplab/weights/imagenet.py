"""ImageNet-pretrained ResNetV1c backbones: the weights the reference toolbox starts every DeepLabV3+ run from.

sssegmentation (like mmsegmentation) initialises ResNet-50/101 with open-mmlab's ``resnet*_v1c`` ImageNet
checkpoints; the 12 reference configs start from the same files, read from weights/ (deeplab.config.IMAGENET_V1C).

For each --depth (default: 50 and 101):
  1. download (resumably, with a progress bar) into ROOT, or copy there the file you give with --archive/--file;
  2. check the file's SHA-256 starts with the 8 hex digits in its name (the torch.hub / mmcv convention);
  3. check it loads with torch.load(weights_only=True) as a state dict and that its tensors load strictly, under
     their own names, into deeplab's deep-stem backbone of that depth (its ImageNet classifier fc.* is dropped).
A file already in ROOT is checked, not downloaded again; a download that fails a check is deleted.

Result: ROOT/resnet50_v1c-2cccc1ad.pth and ROOT/resnet101_v1c-e67eebb6.pth. With the default ROOT (weights) the
reference configs find them as they are; the option naming each file, e.g.
--set model.pretrained=weights/resnet50_v1c-2cccc1ad.pth, is printed at the end for other ROOTs and other configs.
"""

from __future__ import annotations

import argparse
import functools
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from deeplab.models.backbone import resnet_backbone
from deeplab.models.weights import CheckpointError, StateDict, load_backbone_weights, state_dict_of
from deeplab.prepare.download import (
    ChecksumError,
    Resource,
    VerificationError,
    archive_for,
    check_archive_names,
    command_parser,
    copy_into,
    fetch,
    file_checksum,
    run_main,
)

MIRROR = "https://download.openmmlab.com/pretrain/third_party"


def v1c(depth: int, sha256_prefix: str) -> Resource:
    """open-mmlab's ``resnet{depth}_v1c-{sha256_prefix}.pth`` on its public mirror.

    The checksum is a SHA-256 *prefix* (the digits in the file name), which :func:`check_sha256` checks
    (``download.verify_checksum`` compares whole digests only).
    """
    filename = f"resnet{depth}_v1c-{sha256_prefix}.pth"
    return Resource(filename, (f"{MIRROR}/{filename}",), f"sha256:{sha256_prefix}")


BACKBONES = {50: v1c(50, "2cccc1ad"), 101: v1c(101, "e67eebb6")}
LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError)


def check_sha256(path: Path, resource: Resource, fix: str) -> None:
    """Raise :class:`ChecksumError` unless the SHA-256 of ``path`` starts with ``resource``'s ``"sha256:PREFIX"``."""
    algorithm, _, prefix = resource.checksum.partition(":")
    actual = file_checksum(path, algorithm)
    if not actual.startswith(prefix.lower()):
        raise ChecksumError(
            f"{path}: {algorithm} is {actual}, expected one starting with {prefix} as {resource.filename} says; {fix}"
        )


def read_state(path: Path, fix: str) -> StateDict:
    """The tensors in ``path``, loaded on the CPU with ``weights_only=True``; :class:`VerificationError` if it can't."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as error:
        first_sentence = next(iter(str(error).strip().splitlines()), "").split(". ")[0]
        raise VerificationError(
            f"{path} is not a PyTorch checkpoint ({type(error).__name__}: {first_sentence}); {fix}"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise VerificationError(f"{path} holds a {type(checkpoint).__name__}, not a state dict; {fix}")
    state = state_dict_of(checkpoint)
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise VerificationError(f"{path} holds values other than tensors, so it is no state dict; {fix}")
    return state


def build_backbone(depth: int) -> nn.Module:
    """The backbone ``model.pretrained`` is loaded into for ``model.depth=depth`` (randomly initialised, on the CPU)."""
    return resnet_backbone(depth, output_stride=16, deep_stem=True)


def verify(path: Path, fix: str, depth: int) -> None:
    """Check ``path`` is ``BACKBONES[depth]``: its SHA-256 prefix, a state dict, and a strict load into the backbone.

    The last step is :func:`~deeplab.models.weights.load_backbone_weights`, the loader training itself uses. Raises
    :class:`VerificationError` ending with ``fix``.
    """
    resource = BACKBONES[depth]
    check_sha256(path, resource, fix)
    read_state(path, fix)
    try:
        load_backbone_weights(build_backbone(depth), path)
    except CheckpointError as error:
        raise VerificationError(f"{error}; {fix}") from None
    print(f"checked {path}: sha256 {resource.checksum.partition(':')[2]}..., loads into the ResNet-{depth} backbone")


def obtain(depth: int, root: Path, archive: Path | None) -> Path:
    """``ROOT/<file name>`` for ``depth``, verified: from ``archive`` (copied into ``root``), found there, or
    downloaded (:func:`download.fetch` with :func:`verify` as its check)."""
    path = fetch(BACKBONES[depth], root, archive, verify=functools.partial(verify, depth=depth))
    final = root / BACKBONES[depth].filename
    copy_into(path, final)
    return final


def prepare(args: argparse.Namespace) -> None:
    """Get and check the backbone of every requested depth, then print the training option for each."""
    check_archive_names(args.archive, [resource.filename for resource in BACKBONES.values()])
    paths = {
        depth: obtain(depth, args.root, archive_for(args.archive, BACKBONES[depth].filename))
        for depth in dict.fromkeys(args.depth)
    }
    print("ImageNet backbones ready; the reference configs read weights/ by default, or train with:")
    for depth, path in paths.items():
        print(f"  ResNet-{depth} configs (*-r{depth}-*): --set model.pretrained={path.as_posix()}")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """``--root``, ``--depth`` and ``--archive`` (alias ``--file``), described by the module docstring."""
    parser = command_parser(__doc__, prog)
    parser.add_argument("--root", type=Path, default=Path("weights"), help="folder for the weights (default: weights)")
    parser.add_argument(
        "--depth",
        type=int,
        nargs="+",
        choices=sorted(BACKBONES),
        default=sorted(BACKBONES),
        help="ResNet depths to get (default: 50 101)",
    )
    parser.add_argument(
        "--archive",
        "--file",
        metavar="PATH",
        action="append",
        type=Path,
        default=[],
        help="a resnet*_v1c-*.pth you already downloaded: checked, then copied into ROOT; repeat for both depths",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line; see the module docstring."""
    run_main(prepare, build_parser(prog), argv)
