"""deeplab.prepare.download: resumable, mirrored, checksummed downloads from a local server, and safe extraction."""

import hashlib
import io
import random
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deeplab.prepare import download

PAYLOAD = random.Random(0).randbytes(300_000)
MD5 = f"md5:{hashlib.md5(PAYLOAD).hexdigest()}"


class RangeServer(ThreadingHTTPServer):
    """Serves the files of ``directory``; ``cuts[name] = n`` makes the next response for ``name`` stop after n bytes."""

    def __init__(self, directory: Path):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.directory = directory
        self.cuts: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []  # (name, Range header)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_port}/{name}"


class RangeHandler(BaseHTTPRequestHandler):
    """GET with ``Range: bytes=N-`` support (http.server's SimpleHTTPRequestHandler has none)."""

    server: RangeServer

    def do_GET(self) -> None:
        name, byte_range = self.path.lstrip("/"), self.headers.get("Range")
        self.server.requests.append((name, byte_range))
        path = self.server.directory / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(byte_range.removeprefix("bytes=").split("-")[0]) if byte_range else 0
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.server.cuts.pop(name, None)
        self.wfile.write(data[start:] if cut is None else data[start : start + cut])

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    monkeypatch.setenv("no_proxy", "*")  # never send 127.0.0.1 through a proxy from the environment
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "data.bin").write_bytes(PAYLOAD)
    httpd = RangeServer(tmp_path / "www")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_full_download(server: RangeServer, tmp_path: Path):
    path = download.fetch(download.Resource("data.bin", (server.url("data.bin"),), MD5), tmp_path / "dl")
    assert path == tmp_path / "dl" / "data.bin" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "dl" / "data.bin.part").exists()
    assert server.requests == [("data.bin", None)]


def test_interrupted_download_resumes_with_range(server: RangeServer, tmp_path: Path):
    server.cuts["data.bin"] = 100_000
    path = download.fetch(download.Resource("data.bin", (server.url("data.bin"),), MD5), tmp_path / "dl")
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("data.bin", None), ("data.bin", "bytes=100000-")]


def test_partial_part_file_is_continued(server: RangeServer, tmp_path: Path):
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "data.bin.part").write_bytes(PAYLOAD[:123_456])
    sha256 = f"sha256:{hashlib.sha256(PAYLOAD).hexdigest()}"
    path = download.fetch(download.Resource("data.bin", (server.url("data.bin"),), sha256), tmp_path / "dl")
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("data.bin", "bytes=123456-")]


def test_checksum_mismatch_is_one_clear_line_and_leaves_no_file(server: RangeServer, tmp_path: Path):
    wrong = "0" * 32
    with pytest.raises(download.ChecksumError) as error:
        download.fetch(download.Resource("data.bin", (server.url("data.bin"),), f"md5:{wrong}"), tmp_path / "dl")
    message = str(error.value)
    assert "data.bin" in message and wrong in message and hashlib.md5(PAYLOAD).hexdigest() in message
    assert "run again" in message and "\n" not in message
    assert not (tmp_path / "dl" / "data.bin").exists() and not (tmp_path / "dl" / "data.bin.part").exists()


def test_mirrors_are_tried_in_order(server: RangeServer, tmp_path: Path):
    urls = (server.url("missing.bin"), server.url("data.bin"))
    path = download.fetch(download.Resource("data.bin", urls, MD5), tmp_path / "dl")
    assert path.read_bytes() == PAYLOAD
    assert [name for name, _ in server.requests] == ["missing.bin", "data.bin"]


def test_all_mirrors_failing_points_to_archive_option(server: RangeServer, tmp_path: Path):
    urls = (server.url("missing.bin"), "http://127.0.0.1:9/closed-port.bin")
    with pytest.raises(download.PrepareError, match="HTTP 404.*--archive PATH/data.bin"):
        download.fetch(download.Resource("data.bin", urls, MD5), tmp_path / "dl")


def test_archive_option_is_verified_and_used_in_place(server: RangeServer, tmp_path: Path):
    resource = download.Resource("data.bin", (server.url("data.bin"),), MD5)
    mine = tmp_path / "mine" / "data.bin"
    mine.parent.mkdir()
    mine.write_bytes(PAYLOAD)
    assert download.fetch(resource, tmp_path / "dl", archive=mine) == mine
    assert server.requests == [] and not (tmp_path / "dl").exists()
    mine.write_bytes(PAYLOAD[:-1])
    with pytest.raises(download.ChecksumError, match="not the published data.bin"):
        download.fetch(resource, tmp_path / "dl", archive=mine)
    with pytest.raises(download.PrepareError, match="no such file"):
        download.fetch(resource, tmp_path / "dl", archive=tmp_path / "nowhere" / "data.bin")


def test_command_line_downloads_and_reports_errors(server: RangeServer, tmp_path: Path, capsys):
    download.main([server.url("data.bin"), "--dest", str(tmp_path / "dl"), "--checksum", MD5])
    assert (tmp_path / "dl" / "data.bin").read_bytes() == PAYLOAD
    with pytest.raises(SystemExit) as exit_info:
        download.main([server.url("data.bin"), "--dest", str(tmp_path / "dl2"), "--checksum", "md5:" + "1" * 32])
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1" * 32 in errors[0]


def make_tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    """A tar.gz of ``members``: regular files get a few bytes of content, links none."""
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            data = b"" if info.issym() else f"content of {info.name}".encode()
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def file_member(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link_member(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def written_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir())


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda tmp: file_member("../evil.txt"), "'../evil.txt' would land outside"),
        (lambda tmp: file_member(str(tmp / "absolute_evil.txt")), "absolute_evil.txt' has an absolute path"),
        (lambda tmp: link_member("link", "../../evil_link_target"), "'link' would link to .* outside the destination"),
        (lambda tmp: link_member("link", str(tmp / "evil_link_target")), "'link' is a link to an absolute path"),
    ],
    ids=["dotdot", "absolute", "symlink-dotdot", "symlink-absolute"],
)
def test_tar_escaping_the_target_is_refused_and_nothing_written(tmp_path: Path, bad, reason: str):
    target = tmp_path / "sandbox" / "target"
    archive = make_tar(tmp_path / "evil.tar.gz", [file_member("good/first.txt"), bad(tmp_path)])
    with pytest.raises(download.UnsafeArchiveError, match=f"evil.tar.gz: .*{reason}.*refusing"):
        download.extract(archive, target)
    assert written_files(tmp_path) == [archive]


def test_zip_with_dotdot_is_refused_and_nothing_written(tmp_path: Path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good/first.txt", "fine")
        zf.writestr("../evil.txt", "escaped")
    with pytest.raises(download.UnsafeArchiveError, match=r"'\.\./evil\.txt'"):
        download.extract(archive, tmp_path / "target")
    assert written_files(tmp_path) == [archive]


def test_safe_archives_extract(tmp_path: Path):
    tar = make_tar(tmp_path / "ok.tar.gz", [file_member("a/b.txt"), link_member("a/link", "b.txt")])
    download.extract(tar, tmp_path / "from_tar")
    assert (tmp_path / "from_tar" / "a" / "link").read_text() == "content of a/b.txt"
    with zipfile.ZipFile(tmp_path / "ok.zip", "w") as zf:
        zf.writestr("a/b.txt", "zipped")
    download.extract(tmp_path / "ok.zip", tmp_path / "from_zip")
    assert (tmp_path / "from_zip" / "a" / "b.txt").read_text() == "zipped"


def test_not_an_archive_is_a_clear_error(tmp_path: Path):
    (tmp_path / "junk.tar").write_bytes(b"not an archive")
    with pytest.raises(download.PrepareError, match="junk.tar: neither a tar nor a zip"):
        download.extract(tmp_path / "junk.tar", tmp_path / "target")
