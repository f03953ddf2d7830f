"""Fixtures shared by the engine tests: a tiny toy dataset in the VOC layout and a small training config."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deeplab.data.classes import VOC_PALETTE

REPO = Path(__file__).resolve().parents[1]

# A CPU-second-sized variant of toy-r50-d16: 64x64 crops, narrow heads, 2 optimizer steps per epoch on 8 images.
TINY = [
    "data.crop_size=64,64",
    "data.scale=96,64",
    "data.num_workers=0",
    "model.channels=32",
    "train.batch_size=4",
    "train.batch_per_process=2",
    "train.iterations=6",
    "train.checkpoint_every=2",
    "train.log_every=1",
    "train.eval_every_epochs=1000",
]


SESSION = "session-"  # the start of the names of the folders that session fixtures make


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """A data root holding ``toy/`` with 8 training and 4 validation images."""
    root = tmp_path_factory.mktemp(f"{SESSION}data")
    from deeplab.prepare.toy import make_toy

    make_toy(root, train=8, val=4)
    return root


@pytest.fixture(scope="module", autouse=True)
def module_folders_removed(tmp_path_factory) -> Iterator[None]:
    """Remove the folders a test module's fixtures made (``tmp_path_factory.mktemp``) once the module is done, so
    that checkpoints do not pile up over the session; ``tmp_path`` folders are pytest's (kept when a test fails)."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    for folder in set(base.iterdir()) - before:
        if not folder.name.startswith(("test_", SESSION)):
            shutil.rmtree(folder, ignore_errors=True)


def write_mask(path: Path, values: np.ndarray, palette: bool = True) -> np.ndarray:
    """A class mask ``(H, W)`` uint8 saved as a palette ("P", the VOC colours) or grayscale ("L") PNG, folders made;
    returns ``values``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8))
    if palette:
        image.putpalette(VOC_PALETTE)
    image.save(path)
    return values


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with non-trivial BatchNorm statistics and affine terms (seeded), so that folding them
    changes the weights and the predictions vary over the classes."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()
