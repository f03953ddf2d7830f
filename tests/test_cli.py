"""``python -m deeplab``: the model zoo table and one-line errors."""

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deeplab", *args], capture_output=True, text=True, timeout=300)


def test_models_prints_parameters_and_flops():
    result = run("models", "--configs", "voc-r50-d8,cityscapes-r101-d16")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| voc") or line.startswith("| city")]
    assert len(rows) == 2
    assert "| voc-r50-d8 | ResNet-50 | 8 | 21 | 512 x 512 | 45,956,602 | 41,226,213 | 352.4 |" in rows[0]
    assert "| cityscapes-r101-d16 | ResNet-101 | 16 | 19 | 512 x 1024 |" in rows[1]


def test_unknown_config_is_one_line_and_exit_2():
    result = run("models", "--configs", "voc-r50-d9")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown config 'voc-r50-d9'; valid names:")
    assert result.stderr.count("\n") == 1


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0 and "models" in result.stdout
