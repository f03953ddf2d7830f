"""``python -m benchmarks [models|miou|data] [options]``: run one benchmark (default: ``models``).

Each subcommand passes the remaining options on: ``python -m benchmarks models --quick``,
``python -m benchmarks miou --images 20``, ``python -m benchmarks data --rounds 5``.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"models": "benchmarks.models", "miou": "benchmarks.miou", "data": "benchmarks.data_pipeline"}


def main(argv: list[str]) -> None:
    """Dispatch ``argv`` (without the program name) to the chosen benchmark's ``main``."""
    command = argv[0] if argv and not argv[0].startswith("-") else "models"
    rest = argv[1:] if argv and argv[0] == command else argv
    if command not in COMMANDS:
        sys.exit(f"unknown benchmark {command!r}: choose one of {', '.join(COMMANDS)}")
    importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
