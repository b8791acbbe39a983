"""Downloading the release over HTTP, for real, from a local server in a thread: resumable
with Range, Git LFS pointers fetched from the media host, nothing half-written, offline
explained in one line."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kltools.errors import KLToolsError
from kltools.released import fetch, open_release, release_dir, verify
from kltools.released.layout import ALL_FILES, OYAMA, PRETRAINING, TEXTS
from kltools.released.manifest import FOLDER, MANIFEST, REPOSITORY, read_manifest
from kltools.released.synthetic import write_synthetic_release

COMMIT = "0" * 40


class Hub:
    """What the local server serves, what it breaks, and what it was asked."""

    def __init__(self) -> None:
        self.raw: dict[str, bytes] = {}
        self.media: dict[str, bytes] = {}
        self.break_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            hub.requests.append((self.path, rng))
            prefix, _, rest = self.path.lstrip("/").partition("/")
            table = hub.raw if prefix == "raw" else hub.media if prefix == "media" else {}
            want = f"{REPOSITORY}/{COMMIT}/{FOLDER}/"
            if not rest.startswith(want) or rest[len(want) :] not in table:
                self.send_error(404)
                return
            name = rest[len(want) :]
            data = table[name]
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            if start >= len(data) and rng:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            key = f"{prefix}:{name}"
            if key in hub.break_once:  # the connection drops half-way
                hub.break_once.discard(key)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[Hub, str, str]]:
    hub = Hub()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield hub, f"{base}/raw", f"{base}/media"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()
    )


@pytest.fixture
def published(tmp_path: Path, server) -> tuple[Hub, str, str, dict[str, bytes]]:
    hub, raw, media = server
    src = tmp_path / "src"
    write_synthetic_release(src, manifest=False, steps=(0, 1000, 143000))
    files = {}
    for name in ALL_FILES:
        p = src / name
        files[name] = p.read_bytes() if p.is_file() else f"tsne {name}".encode()
    hub.raw.update(files)
    hub.raw[OYAMA] = _lfs_pointer(files[OYAMA])  # a Git LFS file: the raw host serves its pointer
    hub.media[OYAMA] = files[OYAMA]
    return hub, raw, media, files


def _fetch(dest: Path, raw: str, media: str):
    return fetch(dest, COMMIT, progress=False, raw_base=raw, media_base=media)


def test_fetch_downloads_resumes_and_follows_lfs(tmp_path: Path, published) -> None:
    hub, raw, media, files = published
    hub.break_once = {f"raw:{PRETRAINING}", f"media:{OYAMA}"}
    dest = tmp_path / "dest"
    assert _fetch(dest, raw, media) == dest
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name
    assert not list(dest.rglob("*.part"))
    # the interrupted downloads were resumed where they broke off
    resumed = [p for p, rng in hub.requests if rng and rng != "bytes=0-"]
    assert any(p.endswith(PRETRAINING) for p in resumed)
    assert any(p.startswith("/media/") and p.endswith(OYAMA) for p in resumed)
    doc = read_manifest(dest)
    assert doc["commit"] == COMMIT and doc["origin"] == "download"
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path[OYAMA]["url"].startswith(media) and by_path[TEXTS]["url"].startswith(raw)
    assert by_path[OYAMA]["sha256"] == hashlib.sha256(files[OYAMA]).hexdigest()
    assert by_path[OYAMA]["size"] == len(files[OYAMA])
    verify(dest)
    open_release(dest).oyama()
    # a second fetch keeps every verified file: nothing is asked again
    hub.requests.clear()
    _fetch(dest, raw, media)
    assert hub.requests == []


def test_a_part_left_by_an_earlier_run_is_resumed(tmp_path: Path, published) -> None:
    hub, raw, media, files = published
    dest = tmp_path / "dest"
    part = dest / (PRETRAINING + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(files[PRETRAINING][:1000])
    _fetch(dest, raw, media)
    assert (dest / PRETRAINING).read_bytes() == files[PRETRAINING]
    asked = [rng for p, rng in hub.requests if p.endswith(PRETRAINING)]
    assert asked == ["bytes=1000-"]


def test_an_lfs_file_that_does_not_match_its_pointer_is_not_kept(tmp_path: Path, published) -> None:
    hub, raw, media, files = published
    hub.media[OYAMA] = files[OYAMA][:-1] + b"x"
    dest = tmp_path / "dest"
    with pytest.raises(
        KLToolsError, match=r"oyama2025_logp.pkl: the LFS file .* its pointer names"
    ):
        _fetch(dest, raw, media)
    assert not (dest / OYAMA).exists()
    assert not (dest / (OYAMA + ".part")).exists()
    assert not (dest / MANIFEST).exists()


def test_an_http_error_is_one_line(tmp_path: Path, published) -> None:
    hub, raw, media, files = published
    del hub.raw[TEXTS]
    with pytest.raises(KLToolsError, match=r"^texts.json: .* answered HTTP 404"):
        _fetch(tmp_path / "dest", raw, media)
    assert not (tmp_path / "dest" / TEXTS).exists()


def test_offline_says_what_to_download_and_where(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    dest = tmp_path / "dest"
    with pytest.raises(KLToolsError) as err:
        _fetch(dest, f"http://127.0.0.1:{port}/raw", f"http://127.0.0.1:{port}/media")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{FOLDER} of github.com/{REPOSITORY}" in msg and str(dest) in msg
    assert "KLTOOLS_RELEASED_DIR" in msg


def test_a_copy_named_by_the_environment(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "mine"
    write_synthetic_release(d, manifest=False, steps=(0, 143000))
    monkeypatch.setenv("KLTOOLS_RELEASED_DIR", str(d))
    lines: list[str] = []
    assert release_dir(log=lines.append) == d
    assert len(lines) == 1 and "had no MANIFEST.json: wrote one" in lines[0]
    assert release_dir(log=lines.append) == d and len(lines) == 1  # verified, nothing said
    (d / TEXTS).write_text("[]")
    with pytest.raises(KLToolsError, match=r"texts.json in .* is truncated: 2 of \d+ bytes"):
        release_dir()
    monkeypatch.setenv("KLTOOLS_RELEASED_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(KLToolsError, match="is not a folder"):
        release_dir()


def test_release_dir_offline_without_download(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KLTOOLS_RELEASED_DIR", raising=False)
    monkeypatch.setenv("KLTOOLS_DATA_ROOT", str(tmp_path / "data"))
    with pytest.raises(
        KLToolsError,
        match="not downloaded yet: run kltools released fetch .* into .*released/kl-scale-data",
    ):
        release_dir(download=False)
