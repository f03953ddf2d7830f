"""What every download shares: resumable downloads from mirrors, checksums, safe extraction, step stamps.

Standard library plus ``tqdm`` only. The dataset commands (:mod:`deeplab.prepare.voc`, ``ade20k``, ``cityscapes``)
and the weights (:mod:`deeplab.weights`) use it; as a command of its own it downloads one file::

    python -m deeplab data download URL [MIRROR ...] --dest DIR --checksum md5:HEX
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm.auto import tqdm

CHUNK = 1 << 20  # bytes read per network or disk read
TIMEOUT_S = 60  # seconds without data before a connection counts as dead
ATTEMPTS_PER_URL = 3  # an interrupted transfer is resumed this many times before the next mirror is tried


class PrepareError(RuntimeError):
    """A problem with a download, an archive or a dataset folder; the message names the file and the fix."""


class VerificationError(PrepareError):
    """A file that fails its check: not the published file."""


class ChecksumError(VerificationError):
    """A file's checksum is not the published one."""


class UnsafeArchiveError(PrepareError):
    """An archive member would land outside the extraction folder."""


@dataclass(frozen=True)
class Resource:
    """One archive: its file name, the URLs to try in order, and its checksum as ``"md5:<hex>"`` or ``"sha1:<hex>"``."""

    filename: str
    urls: tuple[str, ...]
    checksum: str


def file_checksum(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` with a ``hashlib`` algorithm name (``"md5"``, ``"sha1"``, ``"sha256"``)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path, checksum: str, fix: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has ``checksum`` (``"algorithm:hex"``); ``fix`` ends the message."""
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in hashlib.algorithms_available or not expected:
        raise PrepareError(
            f"checksum {checksum!r}: write it as ALGORITHM:HEX, e.g. md5:6cd6e144f989b92b3379bac3b3de84fd"
        )
    actual = file_checksum(path, algorithm)
    if actual != expected.lower():
        raise ChecksumError(f"{path}: {algorithm} is {actual}, expected {expected}; {fix}")


def download_url(url: str, part: Path) -> None:
    """Download ``url`` into ``part``, continuing a partial ``part`` with an HTTP Range request.

    Raises :class:`PrepareError` when the connection ends before the announced length (run again to resume)
    and ``urllib.error.URLError`` / ``OSError`` for unreachable hosts and HTTP errors.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left after offset: the .part file is already whole
            return
        raise
    with response:
        if response.status != 206:  # the server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(part, "ab" if offset else "wb") as f,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[: -len(".part")]) as bar,
        ):
            while block := response.read(CHUNK):
                f.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size < total:
        raise PrepareError(f"{url}: connection closed at {part.stat().st_size} of {total} bytes; run again to resume")


def fetch(
    resource: Resource,
    dest_dir: Path,
    archive: Path | None = None,
    verify: Callable[[Path, str], None] | None = None,
) -> Path:
    """Return a verified local copy of ``resource``: ``archive`` if given, else ``dest_dir/filename``.

    A missing file is downloaded from the first URL that works (``filename.part`` holds a partial download and is
    resumed). The file gets its final name only after it passed ``verify(path, fix)`` (default: its checksum), which
    raises :class:`VerificationError` ending with ``fix``; a bad download is deleted.
    """
    verify = verify or (lambda path, fix: verify_checksum(path, resource.checksum, fix))
    if archive is not None:
        if not archive.is_file():
            raise PrepareError(f"--archive {archive}: no such file; give the path of {resource.filename}")
        verify(archive, f"it is not the published {resource.filename}; download it again")
        return archive
    final = dest_dir / resource.filename
    if final.exists():
        verify(final, f"delete {final} and run again")
        print(f"found {final} (checksum ok)")
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest_dir / f"{resource.filename}.part"
    _download_from_mirrors(resource, part)
    try:
        verify(part, "deleted it; run again or pass a good copy with --archive PATH")
    except VerificationError:
        part.unlink()
        raise
    part.rename(final)
    return final


def _download_from_mirrors(resource: Resource, part: Path) -> None:
    """Fill ``part`` from the first of ``resource.urls`` that works, resuming interrupted transfers."""
    failures = []
    for url in resource.urls:
        for attempt in range(1, ATTEMPTS_PER_URL + 1):
            print(f"downloading {url} -> {part} (attempt {attempt})")
            try:
                download_url(url, part)
                return
            except urllib.error.HTTPError as error:  # 404 and friends: this mirror will not get better
                failures.append(f"{url}: HTTP {error.code}")
                break
            except (PrepareError, http.client.HTTPException, OSError) as error:  # URLError is an OSError
                failures.append(f"{url}: {error}")
        print(f"giving up on {url}: {failures[-1]}")
    raise PrepareError(
        f"could not download {resource.filename} ({'; '.join(failures)}); "
        f"fetch it by hand and pass --archive PATH/{resource.filename}"
    )


def _check_member_name(name: str, archive: Path, target: Path) -> None:
    """Raise :class:`UnsafeArchiveError` if member ``name`` is absolute or would resolve outside ``target``."""
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract this archive")
    if not (target / name).resolve().is_relative_to(target.resolve()):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would land outside {target}; refusing to extract")


def extract(archive: Path, target: Path) -> None:
    """Extract a tar (any compression) or zip ``archive`` into ``target``, all members checked before any is written.

    Tar members also pass ``tarfile``'s ``"data"`` filter (no links out of ``target``, no devices, safe modes).
    """
    target.mkdir(parents=True, exist_ok=True)
    print(f"extracting {archive} -> {target}")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _check_member_name(name, archive, target)
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        if not hasattr(tarfile, "data_filter"):
            raise PrepareError("safe tar extraction needs Python >= 3.10.12 or >= 3.11.4; upgrade Python")
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _check_member_name(member.name, archive, target)
                try:
                    tarfile.data_filter(member, str(target))
                except tarfile.FilterError as error:
                    raise UnsafeArchiveError(f"{archive}: {error}; refusing to extract this archive") from error
            tf.extractall(target, filter="data")
    else:
        raise PrepareError(f"{archive}: neither a tar nor a zip archive; delete it and download it again")


def copy_into(path: Path, final: Path) -> None:
    """Copy the verified file at ``path`` (an ``--archive``) to ``final``, whole or not at all; nothing if it is
    ``final`` already."""
    if final.exists() and final.samefile(path):
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(f"{final.name}.part")
    shutil.copyfile(path, part)
    part.replace(final)
    print(f"copied {path} -> {final}")


def run_once(stamp: Path, label: str, action: Callable[[], object]) -> None:
    """Run ``action`` unless ``stamp`` exists; create ``stamp`` after it succeeded, so re-runs skip finished steps."""
    if stamp.exists():
        print(f"skip: {label} (done before; delete {stamp} to redo)")
        return
    print(f"step: {label}")
    action()
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()


def archive_for(archives: Iterable[Path], filename: str) -> Path | None:
    """The path among ``archives`` (``--archive`` values) whose file name is ``filename``, or None."""
    return next((path for path in archives if path.name == filename), None)


def check_archive_names(archives: Iterable[Path], filenames: Sequence[str]) -> None:
    """Raise :class:`PrepareError` for an ``--archive`` whose name is none of ``filenames``."""
    for path in archives:
        if path.name not in filenames:
            raise PrepareError(f"--archive {path}: expected a file named one of {', '.join(filenames)}; rename it")


def fetch_and_extract(resource: Resource, args: argparse.Namespace, stamp: Path) -> None:
    """Step: get ``resource`` (its ``--archive``, else a download into ROOT/downloads) and extract it into ROOT.

    ``stamp`` is a file in a folder the archive creates; it marks the step done, so re-runs skip it.
    """
    archive = archive_for(args.archive, resource.filename)
    run_once(
        stamp,
        f"get and extract {resource.filename}",
        lambda: extract(fetch(resource, args.root / "downloads", archive), args.root),
    )


def count_pairs(images: Iterable[str], masks: Iterable[str], where: str, fix: str) -> int:
    """Number of images, after checking every image id has a mask id and vice versa (else :class:`PrepareError`)."""
    images, masks = set(images), set(masks)
    if unpaired := sorted(images ^ masks):
        raise PrepareError(
            f"{where}: {len(unpaired)} images or masks without their pair, e.g. {', '.join(unpaired[:3])}; {fix}"
        )
    return len(images)


def check_counts(counts: dict[str, int], expected: dict[str, int], verify: bool) -> None:
    """Print ``counts`` and, if ``verify``, raise :class:`PrepareError` where they differ from ``expected``."""
    for name, count in counts.items():
        print(f"  {name}: {count:,}" + (f" (expected {expected[name]:,})" if name in expected else ""))
    wrong = [
        f"{name} has {counts[name]:,}, expected {want:,}" for name, want in expected.items() if counts[name] != want
    ]
    if verify and wrong:
        raise PrepareError(
            f"incomplete dataset: {'; '.join(wrong)}; delete the extracted folder and run again "
            "(or pass --no-verify-counts for a subset)"
        )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--root``, ``--archive`` (repeatable) and ``--no-verify-counts``, shared by the dataset commands."""
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root folder (default: %(default)s)")
    parser.add_argument(
        "--archive",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="an archive you already have, used instead of downloading (checked against its published checksum where "
        "there is one); repeat for several",
    )
    parser.add_argument(
        "--no-verify-counts",
        dest="verify_counts",
        action="store_false",
        help="do not fail when image counts differ from the official ones (for subsets and tiny test data)",
    )


def command_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser described by ``description`` (a module docstring, kept as written), called ``prog`` in its
    messages (e.g. ``python -m deeplab data voc``; default: the script's name)."""
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def dataset_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The command line every dataset command shares (``--root``, ``--archive``, ...), described by ``description``."""
    parser = command_parser(description, prog)
    add_common_arguments(parser)
    return parser


def run_main(
    main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> None:
    """Parse ``argv`` and run ``main``; a :class:`PrepareError` becomes one ``error:`` line and exit code 1."""
    args = parser.parse_args(argv)
    try:
        main(args)
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _fetch_one(args: argparse.Namespace) -> None:
    resource = Resource(args.filename or args.urls[0].rsplit("/", 1)[-1], tuple(args.urls), args.checksum)
    print(f"saved {fetch(resource, args.dest)}")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line: download one file from a list of mirrors, resumable and verified."""
    parser = command_parser(__doc__, prog)
    parser.add_argument("urls", nargs="+", metavar="URL", help="URLs of the same file, tried in order")
    parser.add_argument("--dest", type=Path, default=Path("."), help="folder to save into (default: %(default)s)")
    parser.add_argument("--checksum", required=True, help='expected checksum, "md5:HEX", "sha1:HEX" or "sha256:HEX"')
    parser.add_argument("--filename", help="name to save as (default: the last part of the first URL)")
    run_main(_fetch_one, parser, argv)
