"""``python -m benchmarks [models|miou|data|evaluation|gpu|step] [options]``: run one benchmark, or with no name (what
``make bench`` runs) ``models`` then ``evaluation``. ``gpu`` is the one command for a GPU lent for minutes.

Each subcommand passes the remaining options on: ``python -m benchmarks models --quick``,
``python -m benchmarks miou --images 20``, ``python -m benchmarks data --rounds 5``,
``python -m benchmarks evaluation --quick``. Without a name the options go to both (both take ``--quick`` and
``--threads``): ``python -m benchmarks --quick``.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "models": "benchmarks.models",
    "miou": "benchmarks.miou",
    "data": "benchmarks.data_pipeline",
    "evaluation": "benchmarks.evaluation",
    "gpu": "benchmarks.gpu",
    "step": "benchmarks.step",
}
DEFAULT = ("models", "evaluation")  # run in turn when no benchmark is named


def main(argv: list[str]) -> None:
    """Dispatch ``argv`` (without the program name) to the chosen benchmarks' ``main``."""
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    named = bool(argv) and not argv[0].startswith("-")
    if named and argv[0] not in COMMANDS:
        sys.exit(f"unknown benchmark {argv[0]!r}: choose one of {', '.join(COMMANDS)}")
    commands, rest = ([argv[0]], argv[1:]) if named else (DEFAULT, argv)
    for command in commands:
        importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
