"""The README and the pages in ``docs/`` stay true to the repository: every relative link and anchor resolves, and
every command they show is one the repository has, with arguments its own parser accepts.

Commands are parsed, never run (the long ones need GPUs, datasets or hours): ``python -m deeplab`` with the package's
argument parser, ``data_scripts/*.py`` and ``python -m benchmarks`` with theirs, stopped right after parsing. The
``python -m deeplab reproduce`` lines are also run, in smoke mode, by ``tests/test_reproduce.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote

import pytest

from deeplab.__main__ import DATA_COMMANDS, WEIGHTS_COMMANDS, build_parser
from deeplab.config import config_names

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "data_scripts"))

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
PYTHON = ("python", "python3")
# Programs a page may show that this repository does not provide; they are installers, launchers and tools whose
# own options are not ours to check. ``torchrun`` and ``srun`` lines are checked for what they launch.
OTHER_PROGRAMS = {"pip", "conda", "apt-get", "jupyter", "papermill", "sbatch", "tensorboard"}
LAUNCHERS = {"torchrun", "srun"}
BENCHMARKS = importlib.import_module("benchmarks.__main__").COMMANDS  # the names ``python -m benchmarks`` takes
SHELL_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")  # ``HEAD=$(...)`` in a job script: plain shell


def without_code(text: str) -> str:
    """``text`` without fenced blocks and inline code spans, where brackets and ``#`` are not markdown."""
    return re.sub(r"`[^`]*`", "", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    """The link targets of ``page``: markdown links and images, and the ``src``/``href`` of HTML tags."""
    return [match.group(1) or match.group(2) for match in LINK.finditer(without_code(page.read_text()))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the text without markup, lowercase, punctuation but ``-`` and ``_`` dropped,
    spaces as ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>|[`*]", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings, with GitHub's ``-1``, ``-2``, ... for repeated ones."""
    found, times = set(), {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        name = slug(heading)
        found.add(f"{name}-{times[name]}" if name in times else name)
        times[name] = times.get(name, 0) + 1
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that name no file or folder, or an anchor its markdown file lacks."""
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked here, no network in tests
            continue
        path, _, anchor = unquote(target).partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.name}")
        # An anchor into another kind of file (a notebook) is not checked: none is linked that way.
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    assert links(page), f"{page.name} links nowhere: the link pattern no longer matches its links"
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text(
        "# Other page\n\n## The `global` batch: 8 GPUs\n\n```bash\n# not a heading\n```\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "[fine](other.md#the-global-batch-8-gpus) [also fine](#a-title) [gone](missing.md) "
        '[no anchor](other.md#not-a-heading) <img src="missing.png" alt="x"> `[code](missing.md)`\n\n# A title\n'
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#not-a-heading: no heading with that anchor in other.md",
        "missing.png: no such file",
    ]


def test_github_anchors_of_headings():
    assert slug("Export for deployment: ONNX, TorchScript, ExportedProgram") == (
        "export-for-deployment-onnx-torchscript-exportedprogram"
    )
    assert slug("What the full runs cost (an estimate on paper, not a measurement)") == (
        "what-the-full-runs-cost-an-estimate-on-paper-not-a-measurement"
    )
    assert slug("[Notebook 10](x.ipynb) and `best.pth`") == "notebook-10-and-bestpth"


# Commands.


def shell_commands(page: Path) -> list[str]:
    """The command lines of ``page``'s ```bash blocks, continuation lines joined."""
    blocks = [body for language, body in FENCE.findall(page.read_text()) if language in ("bash", "sh", "shell")]
    return [line for body in blocks for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def inline_commands(page: Path) -> list[str]:
    """The inline code spans of ``page`` (outside fenced blocks) that name one of the repository's commands."""
    spans = (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", FENCE.sub("", page.read_text())))
    return [span for span in spans if re.match(r"(python3? (-m (deeplab|benchmarks)|data_scripts/)|make )", span)]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


class Parsed(BaseException):
    """Raised right after a parser accepted the arguments, so that nothing runs."""


@contextlib.contextmanager
def stop_after_parsing() -> Iterator[None]:
    """Make every ``argparse`` parser raise :class:`Parsed` once it has accepted its arguments."""
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    argparse.ArgumentParser.parse_args = parse_and_stop
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original


def parser_error(main: Callable[[list[str]], object], arguments: list[str]) -> str | None:
    """What ``main``'s own parser says against ``arguments`` (``None`` when it accepts them); nothing runs."""
    stderr = io.StringIO()
    with stop_after_parsing(), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(arguments)
        except Parsed:
            return None
        except SystemExit as stop:  # --help exits 0; a refusal exits 2 with its message on stderr
            return None if stop.code == 0 else stderr.getvalue().strip() or f"exit status {stop.code}"
    return "the command ran past its parser"  # a main that parses nothing: this check cannot vouch for it


def unknown_configs(arguments: Sequence[str]) -> list[str]:
    """The config names after ``--config`` or in ``--configs a,b`` that the package does not know."""
    named = [
        name
        for option, value in zip(arguments, arguments[1:], strict=False)
        if option in ("--config", "--configs")
        for name in value.split(",")
    ]
    return [name for name in named if name not in (*config_names(), "all")]


def deeplab_problem(arguments: list[str]) -> str | None:
    """``python -m deeplab ARGUMENTS``: the package's parser accepts them and the configs they name exist."""
    unknown = unknown_configs(arguments)
    if unknown:
        return f"unknown configs {unknown}"
    groups = {"data": DATA_COMMANDS, "weights": WEIGHTS_COMMANDS}
    if len(arguments) > 1 and arguments[1] in groups.get(arguments[0], {}):  # its own parser reads what follows
        return parser_error(importlib.import_module(groups[arguments[0]][arguments[1]][0]).main, arguments[2:])
    return parser_error(lambda arguments: build_parser().parse_args(arguments), arguments)


def script_main(script: str) -> Callable[[list[str]], object] | None:
    path = ROOT / script
    return importlib.import_module(path.stem).main if path.parent.name == "data_scripts" and path.is_file() else None


def benchmarks_main(arguments: list[str]) -> object:
    return importlib.import_module("benchmarks.__main__").main(arguments)


def python_problem(arguments: list[str]) -> str | None:
    """``python ARGUMENTS``: one of the repository's entry points, with arguments it accepts."""
    if arguments[:2] == ["-m", "deeplab"]:
        return deeplab_problem(arguments[2:])
    if arguments[:2] == ["-m", "benchmarks"]:
        return parser_error(benchmarks_main, arguments[2:])
    main = script_main(arguments[0]) if arguments else None
    if main is None:
        return "not one of the repository's commands (python -m deeplab, python -m benchmarks, data_scripts/*.py)"
    return parser_error(main, arguments[1:])


def launched_problem(arguments: list[str]) -> str | None:
    """``torchrun``/``srun`` ARGUMENTS: what they launch with ``-m deeplab`` parses; a bare ``$VARIABLE`` (such as
    ``$RESUME`` in a job script) is the shell's to expand and is left out."""
    if "-m" not in arguments:
        return "launches no module (-m) that this test can check"
    module = arguments[arguments.index("-m") + 1 :]
    if module[:1] != ["deeplab"]:
        return f"launches -m {module[:1]}, not deeplab"
    return deeplab_problem([argument for argument in module[1:] if not re.fullmatch(r"\$\w+", argument)])


def command_problem(line: str) -> str | None:
    """Why the shell line ``line`` is not one of the repository's commands as it accepts them (``None``: it is)."""
    arguments = shlex.split(line, comments=True)
    if not arguments or SHELL_ASSIGNMENT.match(arguments[0]):
        return None  # a comment, or a shell variable set in a job script
    program, rest = Path(arguments[0]).name, arguments[1:]
    if program == "make":
        targets = [argument for argument in rest if not SHELL_ASSIGNMENT.match(argument)]  # DATA=data: a variable
        missing = sorted(set(targets) - makefile_targets())
        return "make names no target" if not targets else f"no Makefile target {missing}" if missing else None
    if program in PYTHON:
        return python_problem(rest)
    if program in LAUNCHERS:
        return launched_problem(rest)
    return None if program in OTHER_PROGRAMS else f"{program}: not a command of this repository nor an allowed one"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_shell_command_parses_with_its_own_parser(page):
    problems = {line: command_problem(line) for line in shell_commands(page)}
    assert {line: problem for line, problem in problems.items() if problem} == {}


def test_the_pages_show_the_commands_of_each_kind():
    """Guards the extraction: were the fences or the joining of lines to change, the pages would seem empty."""
    lines = [shlex.split(line, comments=True) for page in PAGES for line in shell_commands(page)]
    shown = {" ".join(line[:3]) for line in lines if line}
    assert {"make demo", "make test", "python -m deeplab", "python -m benchmarks"} <= shown
    assert any(line[:2] == ["torchrun", "--nnodes"] for line in lines)
    assert any(line[1].startswith("data_scripts/") for line in lines if len(line) > 1 and line[0] == "python")


def inline_problem(span: str) -> str | None:
    """An inline mention names a command that exists: its Makefile target, script, ``deeplab`` subcommand or
    benchmark. Only the name is checked: a mention such as ``python -m deeplab evaluate`` leaves out required options,
    and ``[--configs ...]`` marks an optional part."""
    words = span.split()
    if words[0] == "make":
        return None if words[1] in makefile_targets() else f"no Makefile target {words[1]!r}"
    if words[1] == "-m":
        name = words[3] if len(words) > 3 else None
        if name is None or name.startswith(("<", "-")):
            return None
        if words[2] == "benchmarks":
            return None if name in BENCHMARKS else f"no benchmark {name!r}"
        return deeplab_problem([name, "--help"])  # --help: a known command prints its help and exits 0
    return None if script_main(words[1]) else f"no script {words[1]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_command_named_in_the_text_exists(page):
    assert {span: inline_problem(span) for span in inline_commands(page) if inline_problem(span)} == {}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("make demo", None),
        ("make no-such-target", "no Makefile target ['no-such-target']"),
        ("python -m deeplab train --config voc-r50-d8 --data-root my_data", None),
        ("python -m deeplab train --config voc-r50-d9", "unknown configs ['voc-r50-d9']"),
        ("python -m deeplab evaluate --data-root data", "required: --checkpoint"),
        ("python -m deeplab export --checkpoint x.pth --format onnx --size 0,512", "expected H,W"),
        ("python data_scripts/voc.py --root data --archive VOC.tar", None),
        ("python data_scripts/voc.py --roots data", "unrecognized arguments: --roots"),
        ("python data_scripts/nothing.py", "not one of the repository's commands"),
        ("python -m deeplab data voc --root data --archive VOC.tar", None),
        ("python -m deeplab data voc --roots data", "unrecognized arguments: --roots"),
        ("python -m deeplab weights imagenet --depth 34", "invalid choice: 34"),
        ("python -m benchmarks miou --images 20", None),
        ("python -m benchmarks miou --imagez 20", "unrecognized arguments: --imagez"),
        ("srun torchrun --nproc-per-node 8 -m deeplab train --config voc-r50-d8 $RESUME", None),
        ("torchrun --nproc-per-node 8 -m deeplab trian --config voc-r50-d8", "invalid choice: 'trian'"),
        ("curl https://example.org/x.tar", "curl: not a command of this repository nor an allowed one"),
    ],
)
def test_the_command_check_tells_accepted_from_refused(line, problem):
    found = command_problem(line)
    assert found is None if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("span", "problem"),
    [
        ("make check", None),
        ("make chek", "no Makefile target 'chek'"),
        ("python -m deeplab evaluate", None),
        ("python -m deeplab <command> --help", None),
        ("python -m deeplab evalute", "invalid choice: 'evalute'"),
        ("python -m benchmarks", None),
        ("python -m benchmarks mIoU", "no benchmark 'mIoU'"),
        ("python data_scripts/checkpoints.py --root weights/released [--configs voc-r50-d8,...]", None),
        ("python data_scripts/checkpoint.py", "no script data_scripts/checkpoint.py"),
    ],
)
def test_the_name_check_of_commands_in_the_text(span, problem):
    found = inline_problem(span)
    assert found is None if problem is None else problem in (found or "")
