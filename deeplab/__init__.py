"""DeepLabV3+ from the ground up: the package behind the course notebooks.

>>> import deeplab
>>> model = deeplab.build_model(deeplab.get_config("voc-r50-d8"))  # a network to train
>>> segmenter = deeplab.Segmenter.from_checkpoint("runs/demo/best.pth")  # a trained one, to segment images
>>> mask = segmenter.predict(image)  # (H, W) class indices
"""

from importlib import import_module
from typing import Any

# Each public name and the module that holds it, imported on first use: `python -m deeplab --help` and a usage
# error then answer without importing torch.
_PUBLIC = {
    "Config": "deeplab.config",
    "ConfigError": "deeplab.config",
    "config_names": "deeplab.config",
    "get_config": "deeplab.config",
    "DeepLabV3Plus": "deeplab.models",
    "build_model": "deeplab.models",
    "Segmenter": "deeplab.segmenter",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """A public name (:data:`_PUBLIC`) or a subpackage (``deeplab.data``, ``deeplab.models``, ...), imported now."""
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    try:
        return import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as missing:
        if missing.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'deeplab' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
