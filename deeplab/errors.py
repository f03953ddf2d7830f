"""The errors that mean "bad input": the command line prints them as one line instead of a traceback."""

from deeplab.config import ConfigError
from deeplab.course import RepositoryError
from deeplab.data.classes import UnknownDatasetError
from deeplab.data.datasets import DatasetError
from deeplab.engine.metrics import LabelError
from deeplab.engine.precision import PrecisionError
from deeplab.engine.train import TrainingError
from deeplab.extras import MissingExtraError
from deeplab.logs import LogError
from deeplab.models.weights import CheckpointError
from deeplab.paths import OutputError
from deeplab.viz import MaskError

USER_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError,
    ConfigError,
    DatasetError,
    LabelError,
    LogError,
    MaskError,
    MissingExtraError,
    OutputError,
    PrecisionError,
    RepositoryError,
    TrainingError,
    UnknownDatasetError,
)
