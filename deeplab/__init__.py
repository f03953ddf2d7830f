"""DeepLabV3+ from the ground up: the package behind the course notebooks.

>>> import deeplab
>>> model = deeplab.build_model(deeplab.get_config("voc-r50-d8"))
"""

from deeplab.config import Config, ConfigError, config_names, get_config
from deeplab.models import DeepLabV3Plus, build_model

__all__ = ["Config", "ConfigError", "DeepLabV3Plus", "build_model", "config_names", "get_config"]
__version__ = "0.1.0"
