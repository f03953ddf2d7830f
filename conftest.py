"""How the suite runs on pytest-xdist workers, and the course notebooks under nbval: those that share the course's toy
run on one worker in their numbered order (07, 08, 10 and 11 reuse the run that 00 trains), the others beside them,
with smaller parameters for their long cells. The toy dataset in ``data/toy`` is made once, by the first notebook
that needs it, while the others wait (:func:`pytest_runtest_setup`).

The committed outputs keep the course's full run; the suite proves that every cell still runs, with the same code,
on a shorter budget. The parameters below are added after each notebook's ``parameters`` cell, as papermill adds
injected parameters, and the course's toy run goes to a folder of the suite's own, never to ``runs/course``. The few
checked outputs that print the budget are compared with the budget the suite runs (:data:`BUDGET_IN_OUTPUTS`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

NOTEBOOKS_GROUP = "notebooks"  # the unit of work (pytest-xdist) of the notebooks that share the course run, in order
# Notebooks 01-05 build the network's pieces on random tensors, 06 and 09 read the toy dataset but no run: each can run
# beside the others. The rest read data/toy and the course's toy run, which notebook 00 makes.
ON_THEIR_OWN = ("01_", "02_", "03_", "04_", "05_", "06_", "09_")
READ_NO_DATA = ("01_", "02_", "03_", "04_", "05_")
REPOSITORY = Path(__file__).resolve().parent
DATA = REPOSITORY / "data"  # the notebooks' data_root
TOY_LISTS = [DATA / "toy" / "ImageSets" / "Segmentation" / f"{split}.txt" for split in ("train", "val")]

# The course's toy recipe on a budget: 30 of its 800 iterations, then the evaluation.
COURSE_OVERRIDES = ["train.iterations=30", "train.checkpoint_every=15"]

# What the checked outputs print of the course run's budget: (committed, under the suite), by notebook.
BUDGET_IN_OUTPUTS = {
    "00_setup_and_tour.ipynb": [("batch 8, 800 iterations", "batch 8, 30 iterations")],
    "07_training.ipynb": [
        ("| iterations | 39,660 | 800 | 800 |", "| iterations | 39,660 | 800 | 30 |"),
        ("| epochs | 60 | 16 | 16 |", "| epochs | 60 | 16 | 0.6 |"),
        ("this run: 800 iterations", "this run: 30 iterations"),
        ("iteration 800, config", "iteration 30, config"),
    ],
}

# What notebooks write to fixed places of the repository for a demonstration, made afresh at each run: removed once
# the notebook is done, as the suite's own folder is (the suite's disk stays under 4 GB).
SCRATCH = {
    "07_training.ipynb": ["runs/tiny-whole", "runs/tiny-resumed"],
    "09_reproducing_the_table.ipynb": ["runs/course/repro-resume"],
}


def notebook_parameters(suite: Path) -> dict[str, dict[str, object]]:
    """The parameters each notebook runs with under the suite, by file name. ``suite`` is the suite's folder: the
    course's toy run goes to ``suite/course``, what notebook NN writes to ``suite/NN``."""
    course_run = str(suite / "course" / "toy-r50-d16")
    course = {"run_dir": course_run, "overrides": COURSE_OVERRIDES}
    batch = {"out": "repro-smoke", "failing_out": "repro-failure", "log_demo": "log-demo"}
    return {
        "00_setup_and_tour.ipynb": course,
        "07_training.ipynb": course,
        "08_evaluation_and_inference.ipynb": {**course, "subset": 4},
        "09_reproducing_the_table.ipynb": {
            "configs": ["voc-r50-d16"],  # tests/test_reproduce.py runs batches of several configs
            **{name: str(suite / "09" / folder) for name, folder in batch.items()},
            "timing_repeats": 1,
        },
        "10_your_own_data.ipynb": {"course_run": course_run, "run_root": str(suite / "10"), "iterations": 5},
        "11_a_trained_network_up_close.ipynb": {**course, "images": 10},
    }


def injected_source(parameters: dict[str, object]) -> str:
    """The lines added to a ``parameters`` cell: one assignment per parameter, as papermill writes them."""
    lines = "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    return f"\n# Parameters injected by the test suite (conftest.py)\n{lines}"


def replace_in_outputs(outputs: list, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in the text of a cell's stored outputs (streams and display data); the count."""
    count = 0
    for output in outputs:
        texts = output.get("data", {}) if "data" in output else output
        for key, value in texts.items():
            if isinstance(value, str) and old in value:
                texts[key], count = value.replace(old, new), count + value.count(old)
    return count


def expect_the_suites_budget(name: str, cells: list[pytest.Item]) -> None:
    """Make the stored outputs of notebook ``name``'s ``cells`` print the suite's budget; a change whose text is in
    no output any more is an error, so that the list can't go stale."""
    for old, new in BUDGET_IN_OUTPUTS.get(name, []):
        if not sum(replace_in_outputs(cell.cell.outputs, old, new) for cell in cells):
            message = f"conftest.py: no output of notebooks/{name} holds {old!r}: update BUDGET_IN_OUTPUTS"
            raise pytest.UsageError(message)


def is_notebook_cell(item: pytest.Item) -> bool:
    return item.path.suffix == ".ipynb"


def pytest_configure(config: pytest.Config) -> None:
    """On a pytest-xdist worker, its share of the cores for this process and what it starts (notebook kernels, the
    commands): two workers of two threads each on two cores trained the toy model 3-7x slower than one alone."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch  # after OMP_NUM_THREADS is set

        torch.set_num_threads(threads)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Hand pytest-xdist's workers whole units, the largest first: the notebooks that share data (one unit, in their
    order), each of the others, each test module (its module-scoped fixtures are then built once)."""
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return Units(config, log)


def work_unit(nodeid: str) -> str:
    """The unit of work a test or notebook cell belongs to (see :func:`pytest_xdist_make_scheduler`)."""
    path = nodeid.split("::", 1)[0]
    if "ipynb" not in nodeid:
        return path
    name = nodeid.rsplit("/", 1)[-1]
    return name[:3] if name.startswith(ON_THEIR_OWN) else NOTEBOOKS_GROUP


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a notebook that reads ``data/toy`` starts, make the toy dataset if it is missing: once, in whichever
    pytest-xdist worker comes first, while the others wait on a file lock (the notebooks would each make it, and two
    writing the same files at once would break both)."""
    if not is_notebook_cell(item) or item.path.name.startswith(READ_NO_DATA) or all(map(Path.is_file, TOY_LISTS)):
        return
    from filelock import FileLock

    DATA.mkdir(exist_ok=True)
    with FileLock(DATA / ".toy.lock"):
        if not all(map(Path.is_file, TOY_LISTS)):  # make_toy writes the lists last
            from deeplab.prepare.toy import make_toy

            make_toy(DATA)


def pytest_itemcollected(item: pytest.Item) -> None:
    """The notebooks are slow: ``make check`` leaves them out."""
    if is_notebook_cell(item):
        item.add_marker(pytest.mark.slow)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the notebooks the suite's parameters and expect the suite's budget in their outputs."""
    notebooks: dict[str, list[pytest.Item]] = {}
    for item in filter(is_notebook_cell, items):
        notebooks.setdefault(item.path.name, []).append(item)
    if not notebooks:
        return
    config.suite_folder = Path(tempfile.mkdtemp(prefix="deeplab-suite-"))
    parameters = notebook_parameters(config.suite_folder)
    for name, cells in notebooks.items():
        parameter_cells = [cell for cell in cells if "parameters" in cell.cell.metadata.get("tags", [])]
        if name in parameters and parameter_cells:  # the whole notebook runs, not a cell picked by its id
            parameter_cells[0].cell.source += injected_source(parameters[name])
            expect_the_suites_budget(name, cells)
    config.last_cells = {cells[-1].nodeid: name for name, cells in notebooks.items()}


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After a notebook's last cell: remove what it wrote to the suite's folder and its :data:`SCRATCH` folders."""
    name = getattr(item.config, "last_cells", {}).get(item.nodeid)
    if name is not None:
        for folder in [item.config.suite_folder / name[:2], *(REPOSITORY / path for path in SCRATCH.get(name, []))]:
            shutil.rmtree(folder, ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = getattr(config, "suite_folder", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
