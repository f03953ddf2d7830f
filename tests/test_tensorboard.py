"""TensorBoard logging: what a run's records and an evaluation write, read back from the event files."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision import tv_tensors
from torchvision.io import decode_png
from torchvision.transforms.v2 import functional as F

from deeplab.config import get_config
from deeplab.data import build_dataset, eval_transforms
from deeplab.engine.evaluate import predict_probabilities
from deeplab.engine.tensorboard import TensorBoardLog
from deeplab.extras import MissingExtraError
from deeplab.models import build_model
from deeplab.viz import colorize_mask
from tests.conftest import randomize_batchnorm

SCALE = (96, 64)  # the toy images (292 x 198) are predicted at 94 x 64
COUNT = 2  # pictures drawn, of the 4 validation images
RECORDS = [
    {"iter": 1, "epoch": 0.5, "lr": 0.01, "loss": 2.5, "loss_cls": 2.0, "loss_aux": 0.5, "seconds_per_iter": 0.25,
     "eta_seconds": 0.5, "empty_batches": 0},
    {"iter": 2, "epoch": 1.0, "lr": 0.005, "seconds_per_iter": 0.5, "eta_seconds": 0.5, "empty_batches": 2},
    {"iter": 3, "epoch": 1.5, "lr": 0.001, "loss": 1.5, "loss_cls": 1.25, "loss_aux": 0.25, "seconds_per_iter": 0.75,
     "eta_seconds": 0.0, "empty_batches": 0},
    {"iter": 3, "epoch": 1.5, "miou": 0.45, "pixel_accuracy": 0.8, "mean_accuracy": 0.5,
     "iou": [0.9, None, float("nan"), 0.4, 0.3, 0.2]},
]  # fmt: skip


def read_events(log_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> tuple[list[int], list[float]]:
    """The steps and the values of ``tag``, in the order they were read."""
    return [event.step for event in events.Scalars(tag)], [event.value for event in events.Scalars(tag)]


@pytest.fixture(scope="module")
def val_set(toy_root):
    return build_dataset("toy", toy_root, "val", transforms=eval_transforms(scale=SCALE))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(2)  # a network that predicts two classes on the toy images
    return randomize_batchnorm(build_model(get_config("toy-r50-d16", ["model.channels=32"])))


@pytest.fixture(scope="module")
def written(tmp_path_factory, val_set, model):
    """The events of the records above and of one evaluation's pictures at iteration 3, by a training network."""
    log_dir = tmp_path_factory.mktemp("run") / "tb"
    model.train()
    with TensorBoardLog(log_dir, val_set.classes, val_set.palette, count=COUNT) as board:
        for record in RECORDS:
            board.write(record)
        board.add_predictions(model, val_set, step=3)
    assert model.training, "the network goes back to training mode"
    model.eval()
    return read_events(log_dir)


def test_scalars_at_their_iterations(written):
    present = ("background", "triangle", "cross", "ring")  # disc (None) and square (NaN) are skipped
    train = [f"train/{key}" for key in ("loss", "loss_cls", "loss_aux", "lr", "seconds_per_iter")]
    assert set(written.Tags()["scalars"]) == {*train, "val/mIoU", "val/pixel_accuracy"} | {
        f"val/IoU/{name}" for name in present
    }
    assert scalars(written, "train/loss") == ([1, 3], [2.5, 1.5])  # the record without labels has no loss
    assert scalars(written, "train/loss_aux") == ([1, 3], [0.5, 0.25])
    assert scalars(written, "train/lr") == ([1, 2, 3], pytest.approx([0.01, 0.005, 0.001]))
    assert scalars(written, "train/seconds_per_iter") == ([1, 2, 3], [0.25, 0.5, 0.75])
    assert scalars(written, "val/mIoU") == ([3], pytest.approx([0.45]))
    assert scalars(written, "val/pixel_accuracy") == ([3], pytest.approx([0.8]))
    assert scalars(written, "val/IoU/background") == ([3], pytest.approx([0.9]))
    assert scalars(written, "val/IoU/ring") == ([3], pytest.approx([0.2]))


def test_pictures_show_image_truth_and_eval_prediction(written, val_set, toy_root, model):
    raw = build_dataset("toy", toy_root, "val")
    ids = [val_set.samples[index].id for index in range(COUNT)]
    assert set(written.Tags()["images"]) == {f"val/overlays/{sample_id}" for sample_id in ids}
    for index, sample_id in enumerate(ids):
        (event,) = written.Images(f"val/overlays/{sample_id}")
        image = val_set[index]["image"]  # (3, h, w) normalized
        height, width = image.shape[-2:]
        assert (event.step, event.height, event.width) == (3, height + 4, 3 * width + 8)
        picture = decode_png(torch.frombuffer(bytearray(event.encoded_image_string), dtype=torch.uint8))
        panels = [picture[:, 2 : 2 + height, 2 + k * (width + 2) : 2 + k * (width + 2) + width] for k in range(3)]
        assert (picture[:, :2] == 255).all() and (picture[:, :, width + 2 : width + 4] == 255).all()  # white gaps
        resized = F.resize(raw[index]["image"], [height, width], antialias=False)  # what the eval transforms saw
        torch.testing.assert_close(panels[0], resized, atol=0, rtol=0)
        truth = F.resize(tv_tensors.Mask(raw[index]["mask"][None]), [height, width])[0]
        assert (truth == 255).any(), "the toy masks have unlabelled borders"
        torch.testing.assert_close(panels[1], colorize_mask(truth, val_set.palette))
        prediction = predict_probabilities(model, image[None], (height, width)).argmax(dim=1)[0]  # eval mode
        torch.testing.assert_close(panels[2], colorize_mask(prediction, val_set.palette))


def test_eval_mode_stays(tmp_path, val_set, model):
    with TensorBoardLog(tmp_path, val_set.classes, val_set.palette, count=1) as board:
        board.add_predictions(model.eval(), val_set, step=1)
    assert not model.training


def test_disabled_imports_and_writes_nothing(tmp_path, monkeypatch, val_set, model):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # an import would fail
    with TensorBoardLog(tmp_path / "tb", val_set.classes, val_set.palette, enabled=False) as board:
        board.write(RECORDS[0])
        board.add_predictions(model, val_set, step=1)
        board.flush()
    assert not (tmp_path / "tb").exists()


def test_missing_package_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # an import fails
    message = "TensorBoard logging (train.tensorboard=true): tensorboard not installed; pip install tensorboard (or "
    message += "the deeplabv3plus-course package's [course] extra: pip install -e '.[course]' in a clone)"
    with pytest.raises(MissingExtraError, match=f"^{re.escape(message)}$"):
        TensorBoardLog(tmp_path / "tb", ["a"], [(0, 0, 0)])
    assert not (tmp_path / "tb").exists()


def test_resume_hides_the_lost_steps_and_a_new_run_starts_afresh(tmp_path):
    def session(start: int, losses: dict[int, float]) -> None:
        with TensorBoardLog(tmp_path, ["a"], [(0, 0, 0)], start=start) as board:
            for step, loss in losses.items():
                board.write({"iter": step, "loss": loss})

    session(0, {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0})  # interrupted after its checkpoint at iteration 2
    time.sleep(1.1)  # event files are named by the second they start in, and read in that order
    session(2, {3: 30.0, 4: 40.0})
    assert scalars(read_events(tmp_path), "train/loss") == ([1, 2, 3, 4], [1.0, 2.0, 30.0, 40.0])
    session(0, {1: 7.0})
    assert scalars(read_events(tmp_path), "train/loss") == ([1], [7.0])
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_the_notebook_magic_loads_in_ipython(tmp_path):
    check = "%load_ext tensorboard\nprint('tensorboard' in get_ipython().magics_manager.magics['line'])"
    command = [sys.executable, "-m", "IPython", "--quick", "--no-banner", "-c", check]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "IPYTHONDIR": str(tmp_path)}, check=True
    )
    assert done.stdout.strip() == "True"
