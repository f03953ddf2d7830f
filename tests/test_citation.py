"""CITATION.cff is valid Citation File Format 1.2.0 and agrees with pyproject.toml and LICENSE."""

import json
from pathlib import Path

import jsonschema
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# The format's own schema, as published at https://citation-file-format.github.io/1.2.0/schema.json (CC-BY-4.0).
SCHEMA = Path(__file__).parent / "data" / "citation-file-format-1.2.0.schema.json"


def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_citation_file_is_valid_against_the_format_schema():
    jsonschema.validate(citation(), json.loads(SCHEMA.read_text()))


def test_citation_states_the_version_and_licence_of_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (citation()["version"], citation()["license"]) == (project["version"], project["license"]["text"])
    assert (ROOT / "LICENSE").read_text().startswith(f"{project['license']['text']} License\n")


def test_the_paper_to_cite_is_deeplabv3plus():
    paper = citation()["preferred-citation"]
    assert paper["doi"] == "10.1007/978-3-030-01234-2_49"
    assert [author["family-names"] for author in paper["authors"]] == ["Chen", "Zhu", "Papandreou", "Schroff", "Adam"]
