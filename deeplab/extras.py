"""The optional parts of the package and the extras that install them.

The distribution (``deeplabv3plus-course``; ``pip install -e .`` in a clone) installs what ``import deeplab``
and the ``train``, ``evaluate`` and ``predict`` commands need. The extras add the rest: ``[course]`` the
notebooks, ``reproduce`` (papermill), TensorBoard, the photographs and SBD's masks (JupyterLab, papermill,
scikit-image, SciPy, ...); ``[export]`` ONNX files (onnx, onnxscript, onnxruntime). A command that needs a missing
one says which, in one line.
"""

from __future__ import annotations

import importlib

DISTRIBUTION = "deeplabv3plus-course"  # the distribution's name (pyproject.toml); the import name is deeplab


class MissingExtraError(ImportError):
    """An optional package that a command needs is not installed."""


def require(*modules: str, extra: str, purpose: str) -> None:
    """Refuse in one line, naming the extra that installs them, when any of ``modules`` cannot be imported."""
    missing = [module for module in modules if not _importable(module)]
    if missing:
        raise MissingExtraError(
            f"{purpose}: {', '.join(missing)} not installed; pip install {' '.join(missing)} "
            f"(or the {DISTRIBUTION} package's [{extra}] extra: pip install -e '.[{extra}]' in a clone)"
        )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
