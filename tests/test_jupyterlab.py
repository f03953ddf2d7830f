"""A lesson notebook runs in JupyterLab in a real browser, the way a student opens it.

The test starts a JupyterLab server on a fresh copy of ``02_atrous_convolution.ipynb`` whose outputs are cleared,
drives Chromium through Run > Run All Cells, and checks both what the page shows (every code cell executed, the
figures rendered, no traceback) and what the browser saved to disk with Ctrl+S. Every output on the page and in the
saved file was therefore produced by the kernel that the browser started. A screenshot of the page is written to
``test-artifacts/jupyterlab_02.png`` whether the test passes or fails.
"""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "02_atrous_convolution.ipynb"
SCREENSHOT = REPO / "test-artifacts" / "jupyterlab_02.png"
CHROMIUM = Path("/usr/bin/chromium")
# JupyterLab otherwise asks whether to fetch news, in a pop-up that covers the notebook.
NO_NEWS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
# JavaScript: Run All marks every code cell [*]: at once; the run is over when none is left, finished or stopped.
RUN_IS_OVER = r"""() => {
    const prompts = [...document.querySelectorAll(".jp-CodeCell .jp-InputArea-prompt")].map(p => p.textContent.trim());
    return !prompts.includes("[*]:") && prompts.some(prompt => /^\[\d+\]:$/.test(prompt));
}"""
TIMEOUT_MS = 180_000  # for running every cell; a kernel start and `import torch` take seconds


@dataclass(frozen=True)
class Server:
    """A running JupyterLab: where to reach it and the folder it serves."""

    port: int
    token: str
    root: Path

    @property
    def url(self) -> str:
        """The address of the server, without the token."""
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; fail on CI and skip elsewhere when it is not installed."""
    if not CHROMIUM.exists():
        message = "install Debian's chromium: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def wait_until_up(server: Server, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Poll ``/api/status`` until the server answers, or fail with the end of its log."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{server.url}/api/status", headers={"Authorization": f"token {server.token}"})
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.25)
    pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """JupyterLab on a free port, serving an empty folder, with its configuration and runtime files in a tmp folder.

    The kernel spec still comes from the environment: Jupyter searches ``sys.prefix/share/jupyter`` after
    ``JUPYTER_DATA_DIR``.
    """
    home = tmp_path_factory.mktemp("jupyter")
    root, settings = home / "root", home / "settings"
    root.mkdir()
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps(NO_NEWS))
    env = os.environ | {
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    server = Server(port=free_port(), token=secrets.token_hex(16), root=root)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={server.port}",
        f"--IdentityProvider.token={server.token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.app_settings_dir={settings}",
    ]
    log = home / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until_up(server, process, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def copy_cleared(notebook: Path, folder: Path) -> Path:
    """Write ``notebook`` into ``folder`` without outputs or execution counts; return the copy."""
    content = nbformat.read(notebook, as_version=4)
    for cell in content.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    copy = folder / notebook.name
    nbformat.write(content, copy)
    return copy


def run_all_cells(page: Page) -> None:
    """Wait for an idle kernel, choose Run > Run All Cells, and wait until the run is over.

    The status bar reads "No Kernel | Initializing" until the kernel is connected; cells run before that are lost.
    """
    idle = page.locator(".jp-StatusBar-TextItem", has_text="| Idle")
    idle.wait_for(timeout=TIMEOUT_MS)
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(RUN_IS_OVER, timeout=TIMEOUT_MS)
    idle.wait_for(timeout=TIMEOUT_MS)


def executed_cells(page: Page) -> int:
    """How many code cells on the page show an execution count ``[n]:``."""
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    return sum(re.fullmatch(r"\[\d+\]:", prompt.strip()) is not None for prompt in prompts)


def save(page: Page, notebook: Path, timeout: float = 30) -> nbformat.NotebookNode:
    """Press Ctrl+S in the notebook and return the file once the saved version on disk has outputs."""
    page.locator(".jp-NotebookPanel-notebook").click()
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = nbformat.read(notebook, as_version=4)
        if any(cell.get("outputs") for cell in saved.cells):
            return saved
        time.sleep(0.25)
    pytest.fail(f"the browser did not save {notebook.name} with outputs")


def error_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    """``ename: evalue`` of every error output of ``notebook``."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    return [f"{out.ename}: {out.evalue}" for cell in cells for out in cell.outputs if out.output_type == "error"]


@pytest.mark.slow
def test_lesson_runs_in_jupyterlab(chromium: Path, jupyterlab: Server) -> None:
    """Run All Cells executes every code cell of lesson 02 without an error and renders its figures."""
    notebook = copy_cleared(NOTEBOOK, jupyterlab.root)
    code_cells = sum(cell.cell_type == "code" for cell in nbformat.read(notebook, as_version=4).cells)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{jupyterlab.url}/lab/tree/{notebook.name}?token={jupyterlab.token}")
            run_all_cells(page)
            assert page.locator(".jp-OutputArea-output", has_text="Traceback").all_text_contents() == []
            assert executed_cells(page) == code_cells
            assert page.locator(".jp-RenderedImage img").count() >= 1
            saved = save(page, notebook)
            page.locator(".jp-RenderedImage img").first.scroll_into_view_if_needed()
        finally:
            page.screenshot(path=SCREENSHOT, full_page=True)
            browser.close()
    assert all(cell.execution_count for cell in saved.cells if cell.cell_type == "code")
    assert error_outputs(saved) == []
    images = [out for cell in saved.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert images
