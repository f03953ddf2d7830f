"""The install: environment.yml installs what ``make setup`` does, constraints.txt pins every dependency, and the
runtime dependencies with the course and export extras cover everything the package, the data scripts and the
notebooks import."""

import ast
import json
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def environment_pip_lines() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    return [line.removeprefix("      - ").strip() for line in lines[start + 1 :] if line.startswith("      - ")]


def test_environment_yml_installs_what_make_setup_does():
    setup = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line and "course" in line
    )
    assert setup.endswith("-c constraints.txt -e '.[course,export]'")
    assert environment_pip_lines() == ["-c constraints.txt", "--editable .[course,export]"]


def test_the_constraints_pin_every_dependency_and_extra_at_one_version():
    pins = {
        distribution_name(line): line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert all(
        line.count("==") == 1 for line in (ROOT / "constraints.txt").read_text().splitlines() if line[:1].isalnum()
    )
    required = [*PROJECT["dependencies"], *(r for extra in PROJECT["optional-dependencies"].values() for r in extra)]
    names = {distribution_name(requirement) for requirement in required if "python_version" not in requirement}
    assert names - {PROJECT["name"]} <= set(pins), sorted(names - {PROJECT["name"]} - set(pins))
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")


def distribution_name(requirement: str) -> str:
    """``"torch==2.14.1"`` -> ``"torch"``, normalised as PyPI does."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def imported_modules(source: str) -> set[str]:
    """The top-level names that ``source`` imports absolutely (``import a.b``, ``from a import b``: ``a``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.partition(".")[0])
    return names


def notebook_code(path: Path) -> str:
    """A notebook's code cells without their IPython magics and shell lines."""
    cells = json.loads(path.read_text())["cells"]
    lines = [line for cell in cells if cell["cell_type"] == "code" for line in "".join(cell["source"]).splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def test_the_runtime_dependencies_cover_every_import_of_the_course_and_package():
    sources = {path: path.read_text() for path in [*ROOT.glob("deeplab/**/*.py"), *ROOT.glob("data_scripts/*.py")]}
    sources |= {path: notebook_code(path) for path in (ROOT / "notebooks").glob("*.ipynb")}
    first_party = {"deeplab", "data_scripts"} | {path.stem for path in (ROOT / "data_scripts").glob("*.py")}
    extras = PROJECT["optional-dependencies"]
    declared = {
        distribution_name(requirement)
        for requirement in [*PROJECT["dependencies"], *extras["course"], *extras["export"]]
    }
    providers = packages_distributions()
    missing = {
        f"{module} ({path.relative_to(ROOT)})"
        for path, source in sources.items()
        for module in imported_modules(source) - first_party - set(sys.stdlib_module_names)
        if not {distribution_name(name) for name in providers.get(module, [module])} & declared
    }
    assert not missing, f"imported but not in [project].dependencies: {sorted(missing)}"
