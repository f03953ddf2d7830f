"""The extras: which modules they bring, and the one line a command that needs a missing one says (the core install
alone running every command, from the installed wheel: tests/test_wheel.py)."""

import re
import sys
from importlib.metadata import packages_distributions

import pytest

from deeplab.extras import DISTRIBUTION, MissingExtraError, require
from tests.test_environment import PROJECT, distribution_name

# The start of a process in which every module of ``HIDDEN`` (the extras' distributions) fails to import, as if only
# the core dependencies were installed: tests/test_wheel.py runs every command that way, from the installed wheel.
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


def test_the_extras_modules_are_those_of_the_optional_distributions():
    assert {"papermill", "jupyterlab", "tensorboard", "onnx", "onnxruntime", "scipy", "skimage", "pytest"} <= (
        extras_modules()
    )
    assert not {"torch", "torchvision", "numpy", "PIL", "tqdm", "matplotlib", "safetensors"} & extras_modules()


def test_a_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "papermill", None)  # an import fails
    message = "reproduce: papermill not installed; pip install papermill (or the deeplabv3plus-course package's"
    with pytest.raises(MissingExtraError, match=f"^{re.escape(message)}"):
        require("papermill", "json", extra="course", purpose="reproduce")
    require("json", extra="course", purpose="reproduce")  # installed: nothing to say


def test_the_messages_name_the_distribution_that_pyproject_declares():
    assert PROJECT["name"] == DISTRIBUTION
