"""Student copies of the course notebooks: the solutions taken out, the outputs cleared, and exercise stubs that
say they are not done yet.

The notebooks mark their solutions the way nbgrader does, so that a teacher can also hand them to nbgrader:

- a cell tagged ``solution`` (a worked solution, in code or prose) is left out of the student copy;
- in a code cell, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` become ``# YOUR CODE HERE`` and
  a ``raise NotImplementedError(...)`` naming the exercise (from the cell's first line, ``# Exercise 3: ...``), so
  the checks after it in the cell (asserts) run once the student has written the code;
- in a markdown cell, ``<details><summary>Solution ...</summary> ... </details>`` blocks are removed.

    python -m deeplab.course.student [--notebooks notebooks] [--out student]
"""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Sequence
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "# YOUR CODE HERE"
NOT_DONE = "not done yet"  # in every stub's error, for the student and for the tests
DETAILS = re.compile(r"<details>\s*<summary>\s*Solution.*?</details>\s*", re.DOTALL)
EXERCISE = re.compile(r"#\s*(Exercise\s+\d+)", re.IGNORECASE)


class SolutionMarkerError(ValueError):
    """A cell whose ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines do not pair up."""


def stub_source(source: str, where: str = "the cell") -> str:
    """``source`` with each marked solution replaced by ``# YOUR CODE HERE`` and a ``raise`` at its indentation."""
    match = EXERCISE.match(source)
    name = match.group(1) if match else "this exercise"
    lines, kept, inside = source.splitlines(), [], False
    for number, line in enumerate(lines, 1):
        marker = line.strip()
        if marker == BEGIN and not inside:
            indent = line[: len(line) - len(line.lstrip())]
            kept += [f"{indent}{STUB}", f'{indent}raise NotImplementedError("{name}: {NOT_DONE}")']
            inside = True
        elif marker == END and inside:
            inside = False
        elif marker in (BEGIN, END):
            raise SolutionMarkerError(f"{where}, line {number}: {marker!r} out of order: pair each {BEGIN} with {END}")
        elif not inside:
            kept.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}: {BEGIN} without {END}: close the solution with a line {END}")
    return "\n".join(kept)


def without_solutions(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` without its cells tagged ``solution``: the lesson alone, as papermill runs it."""
    lesson = copy.deepcopy(notebook)
    lesson.cells = [cell for cell in lesson.cells if SOLUTION_TAG not in cell.metadata.get("tags", [])]
    return lesson


def student_notebook(notebook: nbformat.NotebookNode, name: str = "the notebook") -> nbformat.NotebookNode:
    """A copy of ``notebook`` for students: solution cells left out, solutions stubbed, outputs cleared."""
    student = without_solutions(notebook)
    for index, cell in enumerate(student.cells):
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source, f"{name}, cell {index}")
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source = DETAILS.sub("", cell.source).rstrip()
    return student


def write_student_copies(notebooks: Path, out: Path) -> list[Path]:
    """The student copy of every ``notebooks/*.ipynb``, written under ``out`` with the same names."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(notebooks.glob("*.ipynb")):
        copy_path = out / path.name
        nbformat.write(student_notebook(nbformat.read(path, as_version=4), path.name), copy_path)
        written.append(copy_path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deeplab.course.student", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="the course notebooks")
    parser.add_argument("--out", type=Path, default=Path("student"), help="where the student copies go")
    args = parser.parse_args(argv)
    try:
        written = write_student_copies(args.notebooks, args.out)
    except SolutionMarkerError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {len(written)} student notebooks to {args.out}")


if __name__ == "__main__":
    main()
