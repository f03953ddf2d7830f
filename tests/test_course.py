"""The notebooks find the repository's folders wherever the kernel starts."""

import dataclasses
import json
from pathlib import Path

import pytest

from deeplab import course, get_config

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


def test_a_finished_run_of_the_same_config_is_reused_and_any_other_is_not(tmp_path):
    config = get_config("toy-r50-d16")
    assert course.finished_run(tmp_path, config) is None  # nothing there
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    assert course.finished_run(tmp_path, config) is None  # started, not finished
    (tmp_path / "metrics.json").write_text(json.dumps({"miou": 0.75}))
    assert course.finished_run(tmp_path, config) == {"miou": 0.75}
    assert course.finished_run(tmp_path, get_config("toy-r50-d16", ["train.iterations=300"])) is None
