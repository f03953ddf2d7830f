"""``deeplab.Segmenter``: a checkpoint in three lines, the same predictions as the commands, the Hugging Face layout."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deeplab
from deeplab.__main__ import main
from deeplab.data import dataset_info
from deeplab.data.datasets import read_mask_file
from deeplab.data.transforms import eval_transforms
from deeplab.engine.evaluate import Inference, inference_model, predict_probabilities
from deeplab.models.weights import CheckpointError, read_checkpoint, save_checkpoint
from deeplab.segmenter import as_image_tensor, load_trained
from tests.conftest import TINY


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A best.pth as the trainer writes it (config, classes, mIoU, iteration) of a TINY toy model, random weights
    whose logits differ enough between classes to draw several of them."""
    config = deeplab.get_config("toy-r50-d16", TINY)
    torch.manual_seed(0)
    model = deeplab.build_model(config)
    with torch.no_grad():
        model.decoder.classifier.weight.mul_(50)
    path = tmp_path_factory.mktemp("run") / "best.pth"
    classes = dataset_info("toy").to_dict()
    return save_checkpoint(path, model, config=dataclasses.asdict(config), classes=classes, miou=0.25, iteration=6)


@pytest.fixture(scope="module")
def segmenter(checkpoint: Path) -> deeplab.Segmenter:
    return deeplab.Segmenter.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def image(toy_root: Path) -> np.ndarray:
    """A toy photograph as an (H, W, 3) uint8 array."""
    return np.asarray(Image.open(next((toy_root / "toy" / "JPEGImages").glob("*.jpg"))).convert("RGB"))


def test_three_lines_give_class_indices_at_the_images_size_with_the_classes_attached(segmenter, image):
    mask = segmenter.predict(image)
    assert mask.shape == image.shape[:2] and mask.dtype == torch.int64
    assert len(mask.unique()) > 1 and int(mask.max()) < 6
    assert segmenter.classes.classes == ("background", "disc", "square", "triangle", "cross", "ring")
    assert len(segmenter.classes.palette) == 6
    assert segmenter.measured == {"miou": 0.25, "where": "toy val, iteration 6 of the run that saved it"}


def test_predictions_are_those_of_the_evaluation_path(segmenter, checkpoint, image):
    """Resize to the test scale, normalize, the folded network, probabilities at the image's size: as evaluate."""
    config = deeplab.get_config("toy-r50-d16", TINY)
    model = deeplab.build_model(config)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    pixels = torch.from_numpy(image.copy()).permute(2, 0, 1)
    sample = eval_transforms(scale=config.data.scale)({"image": pixels, "mask": torch.zeros(pixels.shape[1:])})
    for options, inference in (({}, Inference()), ({"flip": True}, Inference(flip=True))):
        expected = predict_probabilities(inference_model(model), sample["image"][None], image.shape[:2], inference)
        torch.testing.assert_close(segmenter.predict_probabilities(image, **options), expected[0])


def test_every_kind_of_image_gives_the_same_mask(segmenter, image):
    expected = segmenter.predict(image)
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)
    for same in (Image.fromarray(image), Image.fromarray(image).convert("RGBA"), tensor, tensor.float() / 255):
        assert torch.equal(segmenter.predict(same), expected)
    gray = image[..., 0]
    assert torch.equal(segmenter.predict(gray), segmenter.predict(Image.fromarray(gray)))
    assert [mask.shape for mask in segmenter.predict([image, image[:40, :30]])] == [image.shape[:2], (40, 30)]
    batch = segmenter.predict(tensor[None].repeat(2, 1, 1, 1))
    assert batch.shape == (2, *image.shape[:2]) and torch.equal(batch[1], expected)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "expected an (H, W, 3) or (H, W) uint8 array, got float32 (4, 4, 3)"),
        (torch.zeros(4, 4), "got a tensor (4, 4)"),
        ("photo.jpg", "got a str"),
    ],
)
def test_what_is_not_an_image_is_one_line(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        as_image_tensor(bad)


def test_weights_changed_after_train_are_the_ones_that_predict(checkpoint, image):
    segmenter = deeplab.Segmenter.from_checkpoint(checkpoint)
    before = segmenter.predict_probabilities(image)  # folds a fast copy of the network
    segmenter.train()
    with torch.no_grad():
        segmenter.network.decoder.classifier.bias.add_(torch.arange(6.0) * 100)  # class 5 everywhere
    assert torch.equal(segmenter.eval().predict(image), torch.full(image.shape[:2], 5))
    assert not torch.equal(segmenter.predict_probabilities(image), before)


def test_save_and_from_pretrained_round_trip_in_the_hugging_face_layout(segmenter, image, tmp_path):
    folder = tmp_path / "toy-segmenter"
    (folder / ".saving-leftover").mkdir(parents=True)  # a folder that exists is written into
    segmenter.save_pretrained(folder)
    assert {path.name for path in folder.iterdir()} == {
        "model.safetensors",
        "config.json",
        "README.md",
        ".saving-leftover",
    }
    values = json.loads((folder / "config.json").read_text())
    assert values["deeplab_config"]["name"] == "toy-r50-d16" and values["classes"]["classes"][1] == "disc"
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: image-segmentation" in card and "library_name: deeplab" in card
    assert 'deeplab.Segmenter.from_pretrained("toy-segmenter")' in card
    assert "| 25.00 | measured of these weights: toy val, iteration 6 of the run that saved it |" in card
    assert "| 3 | triangle | (128, 128, 0) |" in card and "reported" not in card
    loaded = deeplab.Segmenter.from_pretrained(folder)
    assert torch.equal(loaded.predict(image), segmenter.predict(image))
    assert loaded.measured == segmenter.measured and loaded.classes == segmenter.classes
    assert torch.equal(deeplab.Segmenter.from_checkpoint(folder).predict(image), segmenter.predict(image))


def test_the_model_card_of_a_reference_config_says_what_the_reference_reported_and_that_it_is_not_measured():
    config = deeplab.get_config("voc-r50-d16", ["model.pretrained=none"])
    card = deeplab.Segmenter(dataclasses.asdict(config), dataset_info("voc").to_dict()).card_fields()
    assert card["results"] == (
        "| 76.92 | reported by the reference (sssegmentation) for the voc-r50-d16 recipe, single scale; not measured "
        "here |"
    )
    assert card["classes"].splitlines()[15] == "| 15 | person | (192, 128, 128) |"


def test_classes_that_do_not_fit_the_model_are_one_line():
    config = deeplab.get_config("toy-r50-d16", TINY)
    with pytest.raises(deeplab.ConfigError, match="toy-r50-d16 has 6 outputs but 21 class names"):
        deeplab.Segmenter(dataclasses.asdict(config), dataset_info("voc").to_dict())


def test_a_loaded_model_holds_the_checkpoints_tensors_and_a_partial_one_is_refused(checkpoint, tmp_path):
    """The model is built in uninitialised memory (no random init) and every tensor comes from the checkpoint."""
    saved = read_checkpoint(checkpoint)
    loaded = load_trained(checkpoint, None, []).model.state_dict()
    assert loaded.keys() == saved["model"].keys()
    assert all(torch.equal(loaded[key], value) for key, value in saved["model"].items())
    del saved["model"]["decoder.classifier.bias"]
    torch.save(saved, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial.pth does not fit this model \(1 missing: decoder.classifier"):
        load_trained(tmp_path / "partial.pth", None, [])


def test_a_folder_without_weights_is_one_line(segmenter, tmp_path):
    segmenter.save_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors not found: a folder written by Segmenter"):
        deeplab.Segmenter.from_pretrained(tmp_path / "saved")


@pytest.mark.slow
def test_the_commands_take_a_saved_folder_and_predict_writes_the_segmenters_class_indices(
    segmenter, image, toy_root, tmp_path, capsys
):
    folder, out = tmp_path / "saved", tmp_path / "masks"
    segmenter.save_pretrained(folder)
    photo = tmp_path / "photo.png"
    Image.fromarray(image).save(photo)
    assert (
        main(["predict", "--checkpoint", str(folder), str(photo), "--out", str(out), "--color", "--probabilities"]) == 0
    )
    mask = Image.open(out / "photo_mask.png")
    assert mask.mode == "P" and mask.getpalette()[3:6] == [128, 0, 0]  # disc's colour shows class 1
    expected = segmenter.predict(image)
    assert torch.equal(read_mask_file(out / "photo_mask.png")[0].long(), expected)  # the classes, read back
    colors = torch.from_numpy(np.array(Image.open(out / "photo_color.png"))).permute(2, 0, 1)
    assert torch.equal(colors[:, 0, 0], torch.tensor(segmenter.classes.palette[int(expected[0, 0])], dtype=torch.uint8))
    scores = np.load(out / "photo_probabilities.npz")
    assert scores["probabilities"].dtype == np.float16 and scores["probabilities"].shape == (6, *image.shape[:2])
    assert list(scores["classes"]) == list(segmenter.classes.classes)
    assert (out / "photo_overlay.png").is_file() and not list(out.glob(".*"))  # no temporary file left

    assert main(["evaluate", "--checkpoint", str(folder), "--data-root", str(toy_root)]) == 0
    assert "| **mIoU** |" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(folder), "--format", "onnx", "--size", "64,64"]) == 0
    assert (tmp_path / "saved.onnx").is_file()
