"""What ``python -m deeplab compare-logs`` does: our training log beside a reference's released one::

    compare_logs_command(Path("runs/voc-r50-d8"), Path("deeplabv3plus_resnet50os8_voc.log"), Path("runs/cmp"))

prints a markdown table of both runs' window-mean losses at about ten iterations and, with ``out``, writes it to
``log_comparison.md`` and the curves of both runs to ``log_comparison.png`` there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deeplab import viz
from deeplab.engine.runlog import LOG
from deeplab.logs import comparison_table, read_our_log, read_reference_log

NOTE = (
    "Each value is a window mean: the reference's over the 50 iterations before its line and over all its GPUs, "
    "ours over the `log_every` iterations before the record. `loss_aux` is the auxiliary cross-entropy already "
    "multiplied by its weight (0.4 in the reference's configs) in both; `total` = `loss_cls` + `loss_aux`."
)


def compare_logs_command(ours: Path, reference: Path, out: Path | None = None) -> str:
    """Print and return the comparison table of ``ours`` (a run folder or its ``metrics.jsonl``) and
    ``reference`` (a reference ``.log``); with ``out``, also write ``log_comparison.{md,png}`` into it."""
    our_log = ours / LOG if ours.is_dir() else ours
    our_rows, reference_rows = read_our_log(our_log), read_reference_log(reference)
    table = comparison_table(our_rows, reference_rows)
    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        report = f"# Training losses\n\nours: `{our_log}`  \nreference: `{reference}`\n\n{table}\n\n{NOTE}\n"
        (out / "log_comparison.md").write_text(report)
        viz.plot_log_comparison(our_rows, reference_rows).savefig(out / "log_comparison.png", dpi=100)
        print(f"written: {out / 'log_comparison.md'}, {out / 'log_comparison.png'}")
    return table


def run(args: argparse.Namespace) -> None:
    """The command line's ``compare-logs``."""
    compare_logs_command(args.ours, args.reference, args.out)
