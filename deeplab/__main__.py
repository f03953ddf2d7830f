"""Command line of the DeepLabV3+ course: ``python -m deeplab <command> --help``.

Commands: ``models`` (the model zoo), ``train``, ``evaluate``, ``predict``, ``reproduce``, ``compare-logs``,
``export``, ``data`` (datasets) and ``weights`` (ImageNet backbones, released checkpoints); each is a module of
:mod:`deeplab.commands`, imported once its arguments are parsed, so ``--help`` and usage errors answer without torch.
The same ``train`` command runs on many GPUs and machines under ``torchrun``.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from deeplab.choices import AMP_CHOICES, DIST_TIMEOUT_MINUTES, EXPORT_FORMATS
from deeplab.commands import Listed
from deeplab.commands.data import COMMANDS as DATA_COMMANDS
from deeplab.commands.weights import COMMANDS as WEIGHTS_COMMANDS


def _add_group(commands: typing.Any, group: str, listed: Listed, help_text: str) -> None:
    """``python -m deeplab GROUP WHAT [ARGUMENTS ...]``: the module of ``listed[WHAT]`` parses ``ARGUMENTS`` itself,
    so ``WHAT --help`` shows that command's own options."""
    listing = "\n".join(f"  {name:<11} {text}" for name, (_, text) in listed.items())
    parser = commands.add_parser(
        group,
        help=help_text,
        description=f"{help_text}. Commands:\n{listing}\nSee python -m deeplab {group} WHAT --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=list(listed), metavar="WHAT", help=", ".join(listed))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="its options (see WHAT --help)")
    parser.set_defaults(module=f"deeplab.commands.{group}")


def _positive(text: str) -> int:
    """An integer >= 1, for argparse."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _size(text: str) -> tuple[int, int]:
    """``H,W`` (or one number for a square) as two integers >= 1, for argparse."""
    sides = text.split(",")
    if len(sides) not in (1, 2) or not all(side.strip().isdigit() and int(side) >= 1 for side in sides):
        raise argparse.ArgumentTypeError(f"expected H,W (two integers >= 1, e.g. 512,512), got {text!r}")
    numbers = [int(side) for side in sides]
    return numbers[0], numbers[-1]


def _add_common(parser: argparse.ArgumentParser, *, config_required: bool) -> None:
    parser.add_argument(
        "--config",
        required=config_required,
        help="config name: one of the 12 reference configs (python -m deeplab models lists them, e.g. voc-r50-d16), "
        "their CPU-sized toy-* twins, or folder-* for a folder of your own",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")


def _add_inference(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--multi-scale", action="store_true", help="scales 0.5, 0.75, 1.0, 1.25, 1.5, 1.75")
    parser.add_argument("--flip", action="store_true", help="add horizontally flipped predictions")
    parser.add_argument("--slide", action="store_true", help="sliding windows of the crop size, 2/3 overlap")

    parser.add_argument(
        "--amp",
        choices=AMP_CHOICES,
        default="none",
        help="autocast precision of the forward (default none: fp32, as the reference evaluates; fp16: GPUs only)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="run the model as trained (BatchNorm not folded, contiguous memory): slower, same predictions up to "
        "float rounding",
    )


def _add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a file (ours, config inside, or sssegmentation's) or 'released': the reference's trained model of "
        "--config, downloaded and verified on first use",
    )
    parser.add_argument(
        "--released-root", type=Path, default=Path("weights/released"), help="where released checkpoints are kept"
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the subcommands' parsers are of this class too)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m deeplab``."""
    parser = _Parser(prog="python -m deeplab", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    models = commands.add_parser("models", help="print the model zoo: parameters and GFLOPs of each config")
    models.add_argument("--configs", default="all", help="'all' or comma-separated config names")
    models.set_defaults(module="deeplab.commands.models")

    train = commands.add_parser("train", help="train a config (under torchrun: on every process)")
    _add_common(train, config_required=True)
    train.add_argument("--data-root", type=Path, default=Path("data"), help="folder holding the datasets")
    train.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<config>)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.epochs=2")
    train.add_argument("--resume", action="store_true", help="continue from <out>/last.pth")
    train.add_argument(
        "--replan", action="store_true", help="with --resume: go on with another number of processes than the run's"
    )
    train.add_argument(
        "--dist-timeout",
        type=_positive,
        default=DIST_TIMEOUT_MINUTES,
        metavar="MINUTES",
        help="how long a process waits for the others under torchrun (default: %(default)s)",
    )
    train.set_defaults(module="deeplab.commands.train")

    evaluate = commands.add_parser("evaluate", help="mIoU of a checkpoint on a validation split")
    _add_common(evaluate, config_required=False)
    _add_checkpoint(evaluate)
    evaluate.add_argument("--data-root", type=Path, default=Path("data"))
    evaluate.add_argument("--split", default=None, help="default: the config's validation split")
    evaluate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--out", type=Path, default=None, help="write metrics.json and plots here")
    _add_inference(evaluate)
    evaluate.set_defaults(module="deeplab.commands.evaluate")

    predict = commands.add_parser("predict", help="class-index masks (palette PNGs) and overlays of images, folders")
    _add_common(predict, config_required=False)
    _add_checkpoint(predict)
    predict.add_argument(
        "images", nargs="+", type=Path, help="image files (JPEG, PNG, WebP, BMP, TIFF) or folders of them"
    )
    predict.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for <name>_mask.png (class indices as a palette PNG) and <name>_overlay.png (a folder's "
        "sub-folders are kept)",
    )
    predict.add_argument("--color", action="store_true", help="also <name>_color.png: the mask in RGB colours")
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="also <name>_probabilities.npz: the class probabilities, float16 (C, H, W), and the class names",
    )
    _add_inference(predict)
    predict.set_defaults(module="deeplab.commands.predict")

    reproduce = commands.add_parser(
        "reproduce", help="train each config through the training notebook (or evaluate the released checkpoints)"
    )
    reproduce.add_argument("--configs", default="all", help="'all' or comma-separated config names")
    reproduce.add_argument("--data-root", type=Path, default=Path("data"))
    reproduce.add_argument("--out", type=Path, default=Path("runs/repro"))
    reproduce.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    reproduce.add_argument("--smoke", action="store_true", help="toy data, one tiny step per config")
    reproduce.add_argument("--device", choices=["cpu", "cuda"], default=None)
    reproduce.add_argument("--nproc-per-node", type=_positive, default=1, help="GPUs per run (torchrun inside)")
    reproduce.add_argument(
        "--released",
        action="store_true",
        help="evaluate the reference's released checkpoints instead of training (fetched on first use)",
    )
    reproduce.add_argument("--released-root", type=Path, default=Path("weights/released"))
    reproduce.set_defaults(module="deeplab.commands.reproduce")

    compare = commands.add_parser("compare-logs", help="lay a run's training log beside one of the reference's")
    compare.add_argument("--ours", type=Path, required=True, help="a run folder or its metrics.jsonl")
    compare.add_argument("--reference", type=Path, required=True, help="a released sssegmentation .log file")
    compare.add_argument("--out", type=Path, default=None, help="write log_comparison.{md,png} here")
    compare.set_defaults(module="deeplab.commands.compare_logs")

    export = commands.add_parser(
        "export", help="an ONNX, TorchScript or ExportedProgram file of a checkpoint, checked against it"
    )
    export.add_argument(
        "--config", default=None, help="config name, for sssegmentation's checkpoints and 'released' (else stored)"
    )
    _add_checkpoint(export)
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the file's format")
    export.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the file to write (default: beside the checkpoint, <stem>.onnx, <stem>.torchscript.pt or <stem>.pt2)",
    )
    export.add_argument(
        "--size", type=_size, default=None, help="H,W of the example traced and verified (default: the crop size)"
    )
    export.set_defaults(module="deeplab.commands.export")

    _add_group(commands, "data", DATA_COMMANDS, "download and prepare datasets, make the toy data, check your own")
    _add_group(commands, "weights", WEIGHTS_COMMANDS, "download and verify ImageNet backbones and released models")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends with a one-line ``error:`` message and exit status 2. ``--help`` and usage
    errors answer before torch is imported."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "replan", False) and not args.resume:
        parser.error("train --replan goes with --resume: it re-plans a resumed run for another number of processes")
    try:
        status = import_module(args.module).run(args)
    except Exception as error:
        from deeplab.errors import USER_ERRORS  # imported here: data and weights parse their options in run

        if not isinstance(error, USER_ERRORS):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0  # a command's run returns its exit status or nothing


if __name__ == "__main__":
    sys.exit(main())
