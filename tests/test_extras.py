"""The core install alone: ``import deeplab``, train, evaluate and predict need none of the extras, and a command
that needs one names it in one line."""

import re
import subprocess
import sys
import textwrap
from importlib.metadata import packages_distributions

import pytest

from deeplab.extras import DISTRIBUTION, MissingExtraError, require
from tests.conftest import TINY
from tests.test_environment import PROJECT, distribution_name

# Run in a process of its own, in which every module of the extras' distributions fails to import, as if only the
# core dependencies were installed.
CORE_ONLY = """
import sys


class Hidden:  # finds nothing of HIDDEN, as when it is not installed, and the rest as `finder` does

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [Hidden(finder) for finder in sys.meta_path]

from deeplab.__main__ import main

toy, out, tiny = sys.argv[1], sys.argv[2], [f"--set={item}" for item in sys.argv[3:]]
checkpoint = f"{out}/run/last.pth"
assert main(["train", "--config", "toy-r50-d16", "--data-root", toy, "--out", f"{out}/run", *tiny]) == 0
assert main(["evaluate", "--checkpoint", checkpoint, "--data-root", toy]) == 0
assert main(["predict", "--checkpoint", checkpoint, f"{toy}/toy/JPEGImages", "--out", f"{out}/masks"]) == 0
print("export:", main(["export", "--checkpoint", checkpoint, "--format", "onnx"]))
print("imported:", sorted(name for name in sys.modules if name.partition(".")[0] in HIDDEN))
"""


def extras_modules() -> set[str]:
    """The top-level modules of the distributions that only the extras (course, export, dev) install."""
    extras = {
        distribution_name(requirement)
        for requirements in PROJECT["optional-dependencies"].values()
        for requirement in requirements
    } - {PROJECT["name"]}  # the dev extra names the package itself, for the other two
    return {
        module
        for module, distributions in packages_distributions().items()
        if {distribution_name(name) for name in distributions} & extras
    }


@pytest.mark.slow
def test_import_train_evaluate_predict_need_only_the_core_dependencies(toy_root, tmp_path):
    hidden = extras_modules()
    assert {"papermill", "jupyterlab", "tensorboard", "onnx", "onnxruntime", "scipy", "skimage", "pytest"} <= hidden
    script = f"HIDDEN = {sorted(hidden)!r}\n{textwrap.dedent(CORE_ONLY)}"
    command = [sys.executable, "-c", script, str(toy_root), str(tmp_path), *TINY, "train.iterations=2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "export: 2" in result.stdout and "imported: []" in result.stdout
    assert len(list((tmp_path / "masks").glob("*_mask.png"))) == 12  # the toy root's 8 + 4 images
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (  # the export's one line, after the progress bars
        "error: ONNX files: onnx, onnxscript not installed; pip install onnx onnxscript (or the deeplabv3plus-course "
        "package's [export] extra: pip install -e '.[export]' in a clone)"
    )


def test_a_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "papermill", None)  # an import fails
    message = "reproduce: papermill not installed; pip install papermill (or the deeplabv3plus-course package's"
    with pytest.raises(MissingExtraError, match=f"^{re.escape(message)}"):
        require("papermill", "json", extra="course", purpose="reproduce")
    require("json", extra="course", purpose="reproduce")  # installed: nothing to say


def test_the_messages_name_the_distribution_that_pyproject_declares():
    assert PROJECT["name"] == DISTRIBUTION
