"""``--checkpoint released``: the reference's released checkpoint of a config, fetched on first use.

The file comes through ``data_scripts/checkpoints.py`` (download, verification by content, a SHA-256 manifest);
later uses re-check the manifest's SHA-256 (:func:`deeplab.models.zoo.released_checkpoint`), so a file changed
since it was verified is refused instead of evaluated.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deeplab.config import ConfigError
from deeplab.models.weights import CheckpointError
from deeplab.models.zoo import RELEASED, released_checkpoint

RELEASED_NAME = "released"  # the value of --checkpoint that names the reference's file
SCRIPT = Path(__file__).resolve().parents[1] / "data_scripts" / "checkpoints.py"


def resolve_checkpoint(checkpoint: str | Path, config_name: str | None, root: Path, *, quiet: bool = False) -> Path:
    """``checkpoint`` as a path; for ``"released"``, the verified released file of ``config_name`` in ``root``,
    downloaded and verified first if it is not there (with ``quiet``, without showing the download's progress and
    error lines)."""
    if str(checkpoint) != RELEASED_NAME:
        return Path(checkpoint)
    if config_name not in RELEASED:
        raise ConfigError(f"--checkpoint released needs --config with a reference config: {', '.join(RELEASED)}")
    if not (root / RELEASED[config_name].checkpoint).is_file():
        fetch_released(config_name, root, quiet=quiet)
    return released_checkpoint(config_name, root)


def fetch_released(config_name: str, root: Path, *, quiet: bool = False) -> None:
    """Run ``data_scripts/checkpoints.py`` for ``config_name``: its progress and any error line show as it runs,
    unless ``quiet``."""
    if not SCRIPT.is_file():
        raise CheckpointError(
            f"{SCRIPT} not found (the package runs outside its repository): download "
            f"{RELEASED[config_name].checkpoint_urls()[0]}, then run data_scripts/checkpoints.py --archive FILE "
            f"--root {root} from a clone of the repository"
        )
    command = [sys.executable, str(SCRIPT), "--root", str(root), "--configs", config_name]
    if subprocess.run(command, check=False, capture_output=quiet).returncode != 0:
        raise CheckpointError(f"the released checkpoint of {config_name} could not be fetched (see above)")
