"""What the notebooks share: the repository's folders wherever the kernel starts, finished runs, the sample
photographs and the released model (notebook 11's photograph cells, with the stand-in release: tests/test_zoo.py)."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from deeplab import course, get_config
from deeplab.models import zoo

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_is_found_from_the_package_wherever_the_kernel_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert course.repository() == ROOT
    course.go_to_repository()
    assert Path.cwd() == ROOT


def test_a_clone_above_the_working_directory_is_found_when_the_package_is_installed_elsewhere(tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    for marker in ("notebooks", "data_scripts"):
        (clone / marker).mkdir(parents=True)
    (clone / "pyproject.toml").touch()
    monkeypatch.setattr(course.deeplab, "__file__", str(tmp_path / "site-packages" / "deeplab" / "__init__.py"))
    assert course.repository(clone / "notebooks") == clone


def test_no_repository_is_one_line_naming_where_it_looked_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(course.deeplab, "__file__", str(tmp_path / "site-packages" / "deeplab" / "__init__.py"))
    with pytest.raises(course.RepositoryError, match=f"at or above {tmp_path}.*pip install -e CLONE$") as error:
        course.repository(tmp_path)
    assert "\n" not in str(error.value)


def test_a_finished_run_of_the_same_config_is_reused_and_one_of_another_is_refused(tmp_path):
    config = get_config("toy-r50-d16")
    assert course.finished_run(tmp_path, config) is None  # nothing there
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    assert course.finished_run(tmp_path, config) is None  # started, not finished
    (tmp_path / "metrics.json").write_text(json.dumps({"miou": 0.75}))
    assert course.finished_run(tmp_path, config) == {"miou": 0.75}
    other = get_config("toy-r50-d16", ["train.iterations=300"])
    with pytest.raises(course.CourseRunError, match=r"holds a run of another config \(train.iterations: 800 vs 300\)"):
        course.finished_run(tmp_path, other)
    (tmp_path / "metrics.json").unlink()  # unfinished, of another config: refused too
    with pytest.raises(course.CourseRunError, match="retrain = True") as error:
        course.finished_run(tmp_path, other)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("entry", course.PHOTOS, ids=lambda entry: entry.name)
def test_each_photograph_is_a_3_h_w_uint8_rgb_tensor_from_the_scikit_image_wheel(entry):
    picture = course.photo(entry.name)
    assert picture.dtype == torch.uint8 and picture.ndim == 3 and picture.shape[0] == 3
    assert picture.shape[1] >= 300 and picture.shape[2] >= 400 and picture.float().std() > 20  # a real picture


def test_an_unknown_photograph_is_one_line_listing_the_known_ones():
    with pytest.raises(ValueError, match="^no course photo 'dog': choose one of astronaut, chelsea, coffee$"):
        course.photo("dog")


@pytest.mark.slow
def test_offline_the_released_model_is_none_and_one_line_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(zoo.URL_VARIABLE, "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("no_proxy", "*")
    assert course.released_model("voc-r50-d16", tmp_path / "released") is None
    (line,) = capsys.readouterr().out.splitlines()
    assert line == course.how_to_get_released("voc-r50-d16", tmp_path / "released")
    assert "deeplabv3plus_resnet50os16_voc.pth" in line and "--configs voc-r50-d16" in line
    assert not any((tmp_path / "released").glob("*.pth"))
