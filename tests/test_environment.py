"""pyproject.toml and environment.yml install the same packages."""

from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def environment_pip_packages() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    packages = set()
    for line in lines[start + 1 :]:
        if not line.startswith("      - "):
            break
        packages.add(line.removeprefix("      - ").strip())
    return packages - {"--editable ."}


def test_environment_yml_pins_what_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    assert environment_pip_packages() == declared
