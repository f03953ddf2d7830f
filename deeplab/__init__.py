"""DeepLabV3+ from the ground up: the package behind the course notebooks.

>>> import deeplab
>>> model = deeplab.build_model(deeplab.get_config("voc-r50-d8"))  # a network to train
>>> segmenter = deeplab.Segmenter.from_checkpoint("runs/demo/best.pth")  # a trained one, to segment images
>>> mask = segmenter.predict(image)  # (H, W) class indices
"""

from typing import Any

from deeplab.config import Config, ConfigError, config_names, get_config
from deeplab.models import DeepLabV3Plus, build_model

__all__ = ["Config", "ConfigError", "DeepLabV3Plus", "Segmenter", "build_model", "config_names", "get_config"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``deeplab.Segmenter``, imported on first use (it brings the inference engine and huggingface_hub)."""
    if name == "Segmenter":
        from deeplab.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'deeplab' has no attribute {name!r}")
