"""The commands of ``python -m deeplab``, one module each: ``models``, ``train``, ``evaluate``, ``predict``,
``export``, ``reproduce``, ``compare_logs``, ``data`` and ``weights``.

Each module's ``run(args)`` carries out its command for the parsed arguments of :mod:`deeplab.__main__` (which only
builds the parser and dispatches) and returns nothing or an exit status; its other functions are the same work for
Python and the notebooks (e.g. :func:`deeplab.commands.evaluate.evaluate_checkpoint`). ``report`` and ``inference``
hold what several commands share. ``data`` and ``weights`` hand their arguments to the modules of
:mod:`deeplab.prepare` and :mod:`deeplab.weights`, which parse them themselves.
"""

from __future__ import annotations

import argparse
from importlib import import_module

Listed = dict[str, tuple[str, str]]  # command name -> (module with main(argv, prog), one line of help)


def run_listed(group: str, listed: Listed, args: argparse.Namespace) -> int:
    """Run ``python -m deeplab GROUP WHAT ARGUMENTS``: ``main(ARGUMENTS)`` of the module ``listed[WHAT]`` names."""
    module, _ = listed[args.what]
    return import_module(module).main(args.arguments, prog=f"python -m deeplab {group} {args.what}") or 0
