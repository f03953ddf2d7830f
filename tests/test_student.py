"""Student copies: solutions out, stubs that say they are not done yet, everything else as in the course."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from deeplab.course.student import NOT_DONE, SolutionMarkerError, stub_source, student_notebook

ROOT = Path(__file__).resolve().parents[1]
# lessons with self-checking exercise cells: their student copies hold stubs
STUBBED = ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10"]
FAST = ["02", "03", "04"]  # three of them whose copies take seconds: they run here, top to bottom

EXERCISE = """# Exercise 2: the padding that keeps the size
def padding(kernel: int, rate: int) -> int:
    ### BEGIN SOLUTION
    return rate * (kernel - 1) // 2
    ### END SOLUTION


assert padding(3, 2) == 2"""


def course_notebook() -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(
                "## Exercises\n\n2. The padding?\n\n<details><summary>Solution 2</summary>\n\n`p = r`\n</details>\n"
            ),
            nbformat.v4.new_code_cell(EXERCISE, outputs=[nbformat.v4.new_output("stream", text="x")]),
            nbformat.v4.new_code_cell("print(padding(5, 1))", metadata={"tags": ["solution"]}),
        ]
    )


def test_the_student_copy_keeps_the_exercise_and_its_checks_and_drops_the_solutions():
    student = student_notebook(course_notebook())
    assert [cell.cell_type for cell in student.cells] == ["markdown", "code"]
    assert student.cells[0].source == "## Exercises\n\n2. The padding?"
    assert student.cells[1].source.splitlines()[2:4] == [
        "    # YOUR CODE HERE",
        f'    raise NotImplementedError("Exercise 2: {NOT_DONE}")',
    ]
    assert student.cells[1].source.endswith("assert padding(3, 2) == 2") and student.cells[1].outputs == []


def test_the_stub_raises_not_done_yet_and_the_solution_passes_the_same_checks():
    with pytest.raises(NotImplementedError, match=f"^Exercise 2: {NOT_DONE}$"):
        exec(stub_source(EXERCISE), {})
    exec(EXERCISE, {})


@pytest.mark.parametrize("source", ["### END SOLUTION\nx = 1", "x = 1\n### BEGIN SOLUTION\nx = 2"])
def test_unpaired_markers_are_one_line_naming_the_cell(source):
    with pytest.raises(SolutionMarkerError, match="^02.ipynb, cell 4") as error:
        stub_source(source, "02.ipynb, cell 4")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_make_student_writes_a_copy_of_every_notebook_without_solutions(tmp_path):
    subprocess.run([sys.executable, "-m", "deeplab.course.student", "--out", str(tmp_path)], cwd=ROOT, check=True)
    copies = sorted(path.name for path in tmp_path.glob("*.ipynb"))
    assert copies == sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
    for name in copies:
        original = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        student = nbformat.read(tmp_path / name, as_version=4)
        text = "\n".join(cell.source for cell in student.cells)
        assert "<summary>Solution" not in text and "### BEGIN SOLUTION" not in text, name
        solutions = [cell for cell in original.cells if "solution" in cell.metadata.get("tags", [])]
        assert solutions and len(student.cells) == len(original.cells) - len(solutions), name  # all of them, only
        assert all(not cell.get("outputs") for cell in student.cells), name


@pytest.mark.parametrize("number", STUBBED)
def test_self_checking_lessons_keep_a_stub_for_each_exercise_cell(number):
    (original,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
    student = student_notebook(nbformat.read(original, as_version=4), original.name)
    stubs = [cell.source for cell in student.cells if cell.cell_type == "code" and NOT_DONE in cell.source]
    assert stubs, f"{original.name}: no exercise stub left in the student copy"
    numbers = []
    for source in stubs:
        match = re.match(r"# Exercise (\d+): \S", source)
        assert match, f"{original.name}: a stub whose first line is not '# Exercise N: title': {source[:60]!r}"
        assert f'raise NotImplementedError("Exercise {match.group(1)}: {NOT_DONE}")' in source, source[:60]
        numbers.append(int(match.group(1)))
    assert numbers == sorted(set(numbers)), f"{original.name}: exercise cells out of order or repeated: {numbers}"


@pytest.mark.slow
@pytest.mark.parametrize("number", FAST)
def test_fast_student_copies_run_top_to_bottom_with_only_the_stubs_failing(tmp_path, number):
    (original,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
    student = student_notebook(nbformat.read(original, as_version=4), original.name)  # run from tmp_path
    NotebookClient(student, timeout=300, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
    failed = [cell for cell in student.cells if any(out.output_type == "error" for out in cell.get("outputs", []))]
    stubs = [cell for cell in student.cells if cell.cell_type == "code" and NOT_DONE in cell.source]
    assert stubs and failed == stubs
    for cell in failed:
        (error,) = [out for out in cell.outputs if out.output_type == "error"]
        assert (error.ename, error.evalue.endswith(NOT_DONE)) == ("NotImplementedError", True)
