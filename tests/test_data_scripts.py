"""``python -m deeplab data voc|ade20k|cityscapes`` end to end on tiny archives in the official layouts."""

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from deeplab.__main__ import main as deeplab_main
from deeplab.data.classes import VOC_PALETTE
from deeplab.prepare import ade20k, cityscapes, download, voc

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"

RNG = np.random.default_rng(0)


def md5(path: Path) -> str:
    return f"md5:{hashlib.md5(path.read_bytes()).hexdigest()}"


def write_image(path: Path, array: np.ndarray, palette: bool = False) -> np.ndarray:
    """Save ``array`` ((H, W, 3) image or (H, W) uint8 mask) under ``path``, folders made; return ``array``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette:
        image.putpalette(VOC_PALETTE)
    image.save(path)
    return array


def random_mask(high: int, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    return RNG.integers(0, high, shape, dtype=np.uint8)


def write_sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    """An SBD class file: MATLAB struct ``GTcls`` with ``Segmentation``, ``Boundaries`` (20 sparse cells) and
    ``CategoriesPresent``, as benchmark_RELEASE/dataset/cls/*.mat hold them."""
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix(segmentation == k + 1)
    present = np.unique(segmentation[segmentation > 0]).astype(np.uint8).reshape(-1, 1)
    gt = {"Segmentation": segmentation, "Boundaries": boundaries, "CategoriesPresent": present}
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"GTcls": gt})


def pack(source: Path, archive: Path) -> Path:
    """Archive every entry under ``source`` with paths relative to it: .zip, .tar or .tgz by suffix."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(source.rglob("*")):
                zf.write(path, path.relative_to(source).as_posix())
    else:
        with tarfile.open(archive, "w:gz" if archive.suffix == ".tgz" else "w") as tf:
            for child in sorted(source.iterdir()):
                tf.add(child, child.name)
    return archive


def test_sbd_mat_becomes_palette_png_with_the_same_values(tmp_path: Path):
    segmentation = random_mask(21, (7, 5))
    write_sbd_mat(tmp_path / "2008_000002.mat", segmentation)
    voc.save_palette_png(voc.sbd_mask(tmp_path / "2008_000002.mat"), tmp_path / "2008_000002.png")
    png = Image.open(tmp_path / "2008_000002.png")
    assert png.mode == "P"
    np.testing.assert_array_equal(np.asarray(png), segmentation)
    assert png.getpalette()[: 21 * 3] == list(VOC_PALETTE)[: 21 * 3]


def test_trainaug_ids_are_sbd_plus_voc_train_minus_voc_val():
    sbd_train, sbd_val = ["c", "a", "v1"], ["b", "c", "d"]  # "c" in both SBD lists, "v1" is VOC val
    voc_train, voc_val = ["a", "e"], ["v1", "v2"]  # "a" also in SBD
    assert voc.trainaug_ids(sbd_train, sbd_val, voc_train, voc_val) == ["a", "b", "c", "d", "e"]


def make_voc_archives(tmp_path: Path) -> dict:
    """Tiny VOCtrainval_11-May-2012.tar and benchmark.tgz; returns their paths and the masks written."""
    voc_train, voc_val = ["2008_000001", "2008_000002"], ["2008_000003", "2008_000004"]
    sbd_train, sbd_val = ["2008_000002", "2008_000003", "2008_000005"], ["2008_000006"]
    devkit = tmp_path / "voc_src" / "VOCdevkit" / "VOC2012"
    masks = {}
    for i in voc_train + voc_val + ["2008_000005", "2008_000006"]:
        write_image(devkit / "JPEGImages" / f"{i}.jpg", RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    for i in voc_train + voc_val:
        mask = random_mask(21)
        mask[0] = 255  # VOC's "ignore" border
        masks[i] = write_image(devkit / "SegmentationClass" / f"{i}.png", mask, palette=True)
    lists = devkit / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for name, ids in [("train", voc_train), ("val", voc_val), ("trainval", voc_train + voc_val)]:
        (lists / f"{name}.txt").write_text("\n".join(ids) + "\n")
    sbd = tmp_path / "sbd_src" / "benchmark_RELEASE" / "dataset"
    sbd_masks = {i: random_mask(21) for i in sbd_train + sbd_val}
    for i, mask in sbd_masks.items():
        write_sbd_mat(sbd / "cls" / f"{i}.mat", mask)
    (sbd / "train.txt").write_text("\n".join(sbd_train) + "\n")
    (sbd / "val.txt").write_text("\n".join(sbd_val) + "\n")
    masks |= {i: m for i, m in sbd_masks.items() if i not in masks}  # VOC's own masks win
    return {
        "voc": pack(tmp_path / "voc_src", tmp_path / "VOCtrainval_11-May-2012.tar"),
        "sbd": pack(tmp_path / "sbd_src", tmp_path / "benchmark.tgz"),
        "masks": masks,
    }


def test_voc_end_to_end_with_archives_and_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    made = make_voc_archives(tmp_path)
    monkeypatch.setattr(voc, "VOC", download.Resource(voc.VOC.filename, (), md5(made["voc"])))
    monkeypatch.setattr(voc, "SBD", download.Resource(voc.SBD.filename, (), md5(made["sbd"])))
    monkeypatch.setattr(voc, "EXPECTED_COUNTS", {"train": 2, "val": 2, "trainval": 4, "train_aug": 4})
    root = tmp_path / "data"
    voc.main(["--root", str(root), "--archive", str(made["voc"]), "--archive", str(made["sbd"])])

    devkit = root / "VOCdevkit" / "VOC2012"
    lists = devkit / "ImageSets" / "Segmentation"
    assert sorted(p.name for p in lists.iterdir()) == ["train.txt", "train_aug.txt", "trainval.txt", "val.txt"]
    train_aug = ["2008_000001", "2008_000002", "2008_000005", "2008_000006"]  # 000003 is VOC val
    assert (lists / "train_aug.txt").read_text().split() == train_aug
    assert (devkit / "JPEGImages").is_dir() and (devkit / "SegmentationClass").is_dir()
    aug = devkit / "SegmentationClassAug"
    assert sorted(p.stem for p in aug.glob("*.png")) == sorted(made["masks"])
    for i, mask in made["masks"].items():
        png = Image.open(aug / f"{i}.png")
        assert png.mode == "P"
        np.testing.assert_array_equal(np.asarray(png), mask, err_msg=i)
    assert "train_aug: 4 (expected 4)" in capsys.readouterr().out

    voc.main(["--root", str(root)])  # a re-run needs no archives: every step is skipped
    assert capsys.readouterr().out.count("skip:") == 3
    assert (lists / "train_aug.txt").read_text().split() == train_aug


def test_voc_rejects_a_wrong_archive(tmp_path: Path, capsys):
    bad = tmp_path / "VOCtrainval_11-May-2012.tar"
    bad.write_bytes(b"truncated")
    with pytest.raises(SystemExit):
        voc.main(["--root", str(tmp_path / "data"), "--archive", str(bad)])
    error = capsys.readouterr().err
    assert error.startswith(f"error: {bad}: md5 is {md5(bad)[4:]}, expected {voc.VOC.checksum[4:]}")
    assert error.count("\n") == 1 and not (tmp_path / "data" / "VOCdevkit").exists()
    with pytest.raises(SystemExit):
        voc.main(["--root", str(tmp_path / "data"), "--archive", str(tmp_path / "other.tar")])
    assert "expected a file named one of VOCtrainval_11-May-2012.tar, benchmark.tgz" in capsys.readouterr().err


def make_ade_zip(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    dataset = tmp_path / "ade_src" / "ADEChallengeData2016"
    masks = {}
    for split, prefix, n in [("training", "ADE_train", 3), ("validation", "ADE_val", 2)]:
        for k in range(1, n + 1):
            name = f"{prefix}_{k:08d}"
            write_image(dataset / "images" / split / f"{name}.jpg", RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8))
            masks[f"{split}/{name}"] = write_image(dataset / "annotations" / split / f"{name}.png", random_mask(151))
    (dataset / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n")
    return pack(tmp_path / "ade_src", tmp_path / "ADEChallengeData2016.zip"), masks


def test_ade20k_end_to_end_keeps_official_labels_and_checks_counts(tmp_path, monkeypatch, capsys):
    archive, masks = make_ade_zip(tmp_path)
    sha1 = f"sha1:{hashlib.sha1(archive.read_bytes()).hexdigest()}"
    monkeypatch.setattr(ade20k, "ADE20K", download.Resource(archive.name, (), sha1))
    root = tmp_path / "data"
    with pytest.raises(SystemExit):  # official counts on a tiny set: refused
        ade20k.main(["--root", str(root), "--archive", str(archive)])
    assert "training has 3, expected 20,210" in capsys.readouterr().err
    ade20k.main(["--root", str(root), "--no-verify-counts"])  # extracted before: no archive needed
    out = capsys.readouterr().out
    assert "training: 3 (expected 20,210)" in out and "validation: 2 (expected 2,000)" in out
    dataset = root / "ADEChallengeData2016"
    for key, mask in masks.items():  # label 0 stays 0: the loader maps it to ignore when reading
        split, name = key.split("/")
        np.testing.assert_array_equal(np.asarray(Image.open(dataset / "annotations" / split / f"{name}.png")), mask)
        assert (dataset / "images" / split / f"{name}.jpg").is_file()
    (dataset / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    with pytest.raises(SystemExit):
        ade20k.main(["--root", str(root), "--no-verify-counts"])
    assert "ADE_val_00000002" in capsys.readouterr().err


def official_train_ids() -> dict[int, int]:
    """labelId -> trainId from cityscapesscripts, 255 and -1 both meaning ignore (255)."""
    from cityscapesscripts.helpers.labels import labels

    return {label.id: 255 if label.trainId in (255, -1) else label.trainId for label in labels}


def test_cityscapes_train_ids_match_cityscapesscripts():
    official = official_train_ids()
    assert {i: cityscapes.TRAIN_IDS[i] for i in range(-1, 34)} == {i: official[i] for i in range(-1, 34)}
    assert sorted(set(official.values()) - {255}) == list(range(19))
    np.testing.assert_array_equal(cityscapes.LOOKUP[:34], [official[i] for i in range(34)])
    assert (cityscapes.LOOKUP[34:] == 255).all()


def make_cityscapes_zips(tmp_path: Path) -> tuple[list[Path], dict[Path, np.ndarray]]:
    """Tiny leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip; returns them and the labelIds written."""
    labels = {}
    for split, city, n in [("train", "aachen", 2), ("val", "frankfurt", 1), ("test", "berlin", 1)]:
        for k in range(n):
            stem = f"{split}/{city}/{city}_{k:06d}_000019"
            write_image(tmp_path / "img" / "leftImg8bit" / f"{stem}_leftImg8bit.png", np.zeros((4, 8, 3), np.uint8))
            gt = tmp_path / "gt" / "gtFine" / f"{stem}_gtFine_labelIds.png"
            labels[Path(f"{stem}_gtFine_labelIds.png")] = write_image(gt, random_mask(34, (4, 8)))
            (gt.parent / f"{gt.name.removesuffix('_labelIds.png')}_polygons.json").write_text("{}")
    for folder in ["img", "gt"]:
        (tmp_path / folder / "license.txt").write_text("license")
    zips = [pack(tmp_path / "img", tmp_path / "leftImg8bit_trainvaltest.zip")]
    return zips + [pack(tmp_path / "gt", tmp_path / "gtFine_trainvaltest.zip")], labels


def test_cityscapes_end_to_end_writes_train_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    zips, labels = make_cityscapes_zips(tmp_path)
    monkeypatch.setattr(cityscapes, "EXPECTED_COUNTS", {"train": 2, "val": 1})
    root = tmp_path / "data"
    cityscapes.main(["--root", str(root), "--archive", str(zips[0]), "--archive", str(zips[1]), "--workers", "2"])
    gt_fine = root / "cityscapes" / "gtFine"
    assert sorted(p.name for p in gt_fine.iterdir()) == ["test", "train", "val"]
    official = official_train_ids()
    for name, label_ids in labels.items():
        train_ids = np.asarray(Image.open(gt_fine / str(name).replace("_labelIds", "_labelTrainIds")))
        np.testing.assert_array_equal(train_ids, np.vectorize(official.get)(label_ids).astype(np.uint8))
        assert (root / "cityscapes" / "leftImg8bit" / str(name).replace("_gtFine_labelIds", "_leftImg8bit")).is_file()
    assert "train: 2 (expected 2)" in capsys.readouterr().out
    cityscapes.main(["--root", str(root)])
    assert capsys.readouterr().out.count("skip:") == 3


def test_cityscapes_takes_extracted_folders_and_explains_a_missing_one(tmp_path: Path, capsys):
    zips, labels = make_cityscapes_zips(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(SystemExit):
        cityscapes.main(["--root", str(root)])
    assert "leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com/downloads/" in capsys.readouterr().err
    for archive in zips:
        download.extract(archive, root / "cityscapes")
    cityscapes.main(["--root", str(root), "--no-verify-counts", "--workers", "1"])
    assert "using the extracted folder" in capsys.readouterr().out
    assert len(list((root / "cityscapes" / "gtFine").glob("*/*/*_labelTrainIds.png"))) == len(labels)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("group", "what", "option"),
    [
        ("data", "voc", "--no-verify-counts"),
        ("data", "ade20k", "--archive"),
        ("data", "cityscapes", "--workers"),
        ("data", "download", "--checksum"),
        ("data", "toy", "--layout"),
        ("data", "check", "--convert-rgb"),
        ("weights", "imagenet", "--depth"),
        ("weights", "released", "--configs"),
    ],
)
def test_each_command_answers_help_under_its_own_name(group: str, what: str, option: str, capsys):
    with pytest.raises(SystemExit) as leaving:
        deeplab_main([group, what, "--help"])
    usage = capsys.readouterr().out
    assert leaving.value.code == 0 and usage.startswith(f"usage: python -m deeplab {group} {what} ") and option in usage


def test_a_data_script_runs_its_command_as_printed():
    result = subprocess.run([sys.executable, str(SCRIPTS / "download.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: download.py") and "--checksum" in result.stdout
