"""The notebooks find the repository's folders wherever the kernel starts."""

from pathlib import Path

import pytest

from deeplab import course

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_is_found_from_the_package_wherever_the_kernel_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert course.repository() == ROOT
    assert course.go_to_repository() == ROOT and Path.cwd() == ROOT


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
