"""The confusion matrix and its metrics against three independent references on the same random predictions.

- torchmetrics ``MulticlassJaccardIndex`` / ``MulticlassAccuracy`` with ``ignore_index=255``;
- the official Cityscapes script (``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``) on labelId PNGs;
- the per-image ``np.histogram`` intersect-and-union of mmsegmentation 0.x (``mmseg/core/evaluation/mean_iou.py``).

Conventions compared: a class absent from both target and prediction has IoU NaN here and in mmseg/Cityscapes,
and 0 in torchmetrics' per-class output (its ``zero_division=0``); torchmetrics' ``macro`` average leaves such
classes out, so the mIoU agrees with all three.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from deeplab.engine import metrics
from deeplab.engine.metrics import IGNORE_INDEX, ConfusionMatrix, LabelError, confusion_matrix, summarize

NUM_CLASSES = 8
ABSENT = 7  # in neither target nor prediction
ONLY_PREDICTED = 6  # predicted but never in the target: IoU 0, accuracy NaN


def random_predictions(shape: tuple[int, ...], target_classes: int = ONLY_PREDICTED, seed: int = 0):
    """``(pred, target)`` int64 of ``shape``: target in ``0 .. target_classes - 1`` with ~15% ignored, prediction
    right on ~70% of the pixels and otherwise in ``0 .. target_classes`` (one class more than the target)."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(target_classes, shape, generator=generator)
    guess = torch.randint(target_classes + 1, shape, generator=generator)
    pred = torch.where(torch.rand(shape, generator=generator) < 0.7, target, guess)
    target[torch.rand(shape, generator=generator) < 0.15] = IGNORE_INDEX
    return pred, target


def mmseg_areas(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """Summed per-image intersection, union, prediction and label areas, as mmsegmentation 0.x counts them."""
    totals = [np.zeros(num_classes) for _ in range(4)]
    for pred, label in zip(preds, labels, strict=True):
        keep = label != IGNORE_INDEX
        pred, label = pred[keep], label[keep]
        intersect = pred[pred == label]
        bins = np.arange(num_classes + 1)
        area_intersect, area_pred, area_label = (np.histogram(x, bins=bins)[0] for x in (intersect, pred, label))
        for total, area in zip(
            totals, (area_intersect, area_pred + area_label - area_intersect, area_pred, area_label), strict=True
        ):
            total += area
    return tuple(totals)


@pytest.fixture(scope="module")
def case():
    """4 random 37 x 53 images and their metrics, counted in one batched update."""
    pred, target = random_predictions((4, 37, 53))
    metric = ConfusionMatrix(NUM_CLASSES)
    metric.update(pred, target)
    return pred, target, metric.compute()


def test_hand_counted_example():
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])
    target = torch.tensor([[0, 1, 2], [2, 255, 1]])
    matrix = confusion_matrix(pred, target, 3)
    assert matrix.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]  # rows: ground truth, columns: prediction
    result = summarize(matrix)
    assert result["iou"] == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert result["miou"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert result["pixel_accuracy"] == pytest.approx(3 / 5)
    assert result["mean_accuracy"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)


def test_matches_the_mmseg_numpy_areas(case):
    pred, target, result = case
    intersect, union, area_pred, area_label = mmseg_areas(pred.numpy(), target.numpy(), NUM_CLASSES)
    matrix = torch.tensor(result["confusion_matrix"])
    np.testing.assert_array_equal(matrix.diagonal().numpy(), intersect)
    np.testing.assert_array_equal(matrix.sum(0).numpy(), area_pred)
    np.testing.assert_array_equal(matrix.sum(1).numpy(), area_label)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, accuracy = intersect / union, intersect / area_label
    np.testing.assert_allclose(result["iou"], iou)  # NaN in the same places
    assert math.isnan(result["iou"][ABSENT]) and result["iou"][ONLY_PREDICTED] == 0.0
    assert result["miou"] == pytest.approx(np.nanmean(iou))
    np.testing.assert_allclose(result["accuracy"], accuracy)
    assert result["mean_accuracy"] == pytest.approx(np.nanmean(accuracy))
    assert result["pixel_accuracy"] == pytest.approx(intersect.sum() / area_label.sum())


def test_matches_torchmetrics(case):
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    pred, target, result = case
    per_class = MulticlassJaccardIndex(NUM_CLASSES, ignore_index=IGNORE_INDEX, average=None)(pred, target)
    ours = torch.tensor(result["iou"], dtype=torch.float32)  # torchmetrics counts in float32
    present = ~ours.isnan()
    assert present.sum() == NUM_CLASSES - 1
    torch.testing.assert_close(ours[present], per_class[present])
    assert per_class[ABSENT] == 0  # torchmetrics: 0 where we (and mmseg, Cityscapes) say NaN
    macro = MulticlassJaccardIndex(NUM_CLASSES, ignore_index=IGNORE_INDEX, average="macro")(pred, target)
    assert result["miou"] == pytest.approx(macro.item(), abs=1e-6)  # absent classes left out of the mean by both
    micro = MulticlassAccuracy(NUM_CLASSES, ignore_index=IGNORE_INDEX, average="micro")(pred, target)
    assert result["pixel_accuracy"] == pytest.approx(micro.item(), abs=1e-6)


def test_matches_the_official_cityscapes_evaluation(tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cityscapes
    from cityscapesscripts.helpers.labels import labels

    train_classes = sorted((label.trainId, label) for label in labels if 0 <= label.trainId < 255)
    label_ids = np.zeros(256, dtype=np.uint8)  # trainId -> labelId; 255 -> 0 ("unlabeled", ignored in evaluation)
    for train_id, label in train_classes:
        label_ids[train_id] = label.id
    pred, target = random_predictions((3, 24, 40), target_classes=18, seed=1)  # class 18 only in the prediction
    target[target == 3], pred[pred == 3] = 4, 5  # class 3 ("wall") nowhere: NaN
    prediction_files, ground_truth_files = [], []
    for index, (p, t) in enumerate(zip(pred.numpy(), target.numpy(), strict=True)):
        for array, files, name in ((p, prediction_files, "pred"), (t, ground_truth_files, "gtFine_labelIds")):
            files.append(str(tmp_path / f"city_{index:06d}_{name}.png"))
            Image.fromarray(label_ids[array]).save(files[-1])
    args = copy.copy(cityscapes.args)
    args.evalInstLevelScore, args.evalPixelAccuracy, args.JSONOutput, args.quiet = False, False, False, True
    official = cityscapes.evaluateImgLists(prediction_files, ground_truth_files, args)

    metric = ConfusionMatrix(19)
    metric.update(pred, target)
    result = metric.compute()
    expected = [official["classScores"][label.name] for _, label in train_classes]
    np.testing.assert_allclose(result["iou"], expected)
    assert math.isnan(result["iou"][3]) and result["iou"][18] == 0.0
    assert result["miou"] == pytest.approx(official["averageScoreClasses"])
    rows = np.array(official["confMatrix"])[np.ix_(label_ids[:19], label_ids[:19])]
    np.testing.assert_array_equal(np.array(result["confusion_matrix"]), rows)


@pytest.mark.parametrize(
    "pred_dtype, target_dtype", [(torch.uint8, torch.uint8), (torch.int32, torch.int16), (torch.uint8, torch.int64)]
)
def test_any_integer_dtype_counts_the_same(case, pred_dtype, target_dtype):
    pred, target, result = case
    matrix = confusion_matrix(pred.to(pred_dtype), target.to(target_dtype), NUM_CLASSES)
    assert matrix.tolist() == result["confusion_matrix"]


def test_many_updates_equal_one(case):
    pred, target, result = case
    metric = ConfusionMatrix(NUM_CLASSES)
    for image_pred, image_target in zip(pred, target, strict=True):
        metric.update(image_pred, image_target)  # (H, W) at a time
    assert metric.matrix.tolist() == result["confusion_matrix"]
    metric.reset()
    assert metric.matrix.sum() == 0


def test_chunks_and_table_copies_do_not_change_counts(case, monkeypatch):
    pred, target, result = case
    monkeypatch.setattr(metrics, "CHUNK_PIXELS", 1001)  # chunks of odd size: the tail is not a multiple of the lanes
    monkeypatch.setattr(metrics, "CPU_LANES", 3)
    assert confusion_matrix(pred, target, NUM_CLASSES).tolist() == result["confusion_matrix"]


def test_ignored_and_empty_inputs():
    everything_ignored = ConfusionMatrix(3)
    everything_ignored.update(torch.zeros(2, 5, dtype=torch.long), torch.full((2, 5), IGNORE_INDEX))
    everything_ignored.update(torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5, dtype=torch.long))
    result = everything_ignored.compute()
    assert everything_ignored.matrix.sum() == 0
    assert math.isnan(result["miou"]) and math.isnan(result["pixel_accuracy"])
    json.dumps(result)  # plain Python values throughout


@pytest.mark.parametrize(
    "pred, target, message",
    [
        ([[0, 1]], [[0, 3]], "target holds the value(s) 3, not 0..2 or the ignore index 255"),
        ([[0, 1]], [[-1, 0]], "target holds the value(s) -1"),
        ([[0, 1]], [[256, 0]], "target holds the value(s) 256"),
        ([[0, 3]], [[0, 1]], "prediction holds values from 0 to 3, outside 0..2"),
        ([[0, 1, 2]], [[0, 1]], "differ in shape"),
        ([[0.0, 1.0]], [[0, 1]], "prediction has dtype torch.float32"),
    ],
)
def test_bad_input_gets_one_clear_line(pred, target, message):
    with pytest.raises(LabelError) as error:
        ConfusionMatrix(3).update(torch.tensor(pred), torch.tensor(target))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_target_in_a_later_chunk_is_found(monkeypatch):
    monkeypatch.setattr(metrics, "CHUNK_PIXELS", 16)
    target = torch.zeros(100, dtype=torch.long)
    target[90] = 5
    with pytest.raises(LabelError, match="value\\(s\\) 5, not 0..3"):
        confusion_matrix(torch.zeros(100, dtype=torch.long), target, 4)


def test_all_reduce_is_a_no_op_without_a_process_group(case):
    pred, target, result = case
    metric = ConfusionMatrix(NUM_CLASSES)
    metric.update(pred, target)
    metric.all_reduce()
    assert metric.matrix.tolist() == result["confusion_matrix"]


def _sum_in_two_processes(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    pred, target = random_predictions((4, 37, 53))
    metric = ConfusionMatrix(NUM_CLASSES)
    metric.update(pred[rank::2], target[rank::2])  # each process counts every other image
    metric.all_reduce()
    torch.save(metric.matrix, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_sums_over_processes(case, tmp_path):
    _, _, result = case
    out = tmp_path / "matrix"
    mp.spawn(_sum_in_two_processes, args=(str(tmp_path / "store"), str(out)), nprocs=2)
    for rank in range(2):
        assert torch.load(f"{out}.{rank}").tolist() == result["confusion_matrix"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_counts_on_the_gpu(case):
    pred, target, result = case
    metric = ConfusionMatrix(NUM_CLASSES, device="cuda")
    metric.update(pred.cuda(), target)  # inputs are moved to the matrix's device
    assert metric.matrix.device.type == "cuda"
    assert metric.matrix.tolist() == result["confusion_matrix"]
