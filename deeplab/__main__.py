"""Command line: ``python -m deeplab <command> --help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from deeplab.config import ConfigError, config_names
from deeplab.models.weights import CheckpointError


def _models(args: argparse.Namespace) -> None:
    from deeplab.models.complexity import zoo_table

    names = config_names() if args.configs == "all" else args.configs.split(",")
    print(zoo_table(names))
    print("\nGFLOPs: one inference forward at batch 1 and the crop size (a multiply-add counts as 2 FLOPs).")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m deeplab``."""
    parser = argparse.ArgumentParser(prog="python -m deeplab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    models = commands.add_parser("models", help="print the model zoo: parameters and GFLOPs of each config")
    models.add_argument("--configs", default="all", help="'all' or comma-separated config names")
    models.set_defaults(run=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends with a one-line ``error:`` message and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
