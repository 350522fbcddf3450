"""The downloader against a real HTTP server on 127.0.0.1 serving a tiny fake repository."""
from __future__ import annotations

import csv
import functools
import os
import random
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import fetch
from helpers.config import StudyError, data_root
from helpers.fetch import fetch_data, file_blob_sha1, git_blob_sha1

REPO, COMMIT = "someone/tiny-zoo", "0123456789abcdef0123456789abcdef01234567"
# path in the fetched folder -> (path upstream, bytes); upstream names have spaces and parentheses
FILES = {
    "cat/cat_1.png": ("cat/cat (1).png", b"\x89PNG fake cat " * 50),
    "cat/cat_2.png": ("cat/cat (2).png", b"another cat"),
    "dog/dog_1.jpg": ("dog/Dog photo 1.jpg", os.urandom(200_000)),  # several read chunks
    "frog/frog.jpg": ("frog/frog.jpg", b""),  # an empty file is still a valid blob
}


def test_git_blob_sha1_matches_git(tmp_path):
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    (tmp_path / "f").write_bytes(b"hello\n")
    assert file_blob_sha1(tmp_path / "f") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_file_url_quotes_spaces_and_parentheses():
    row = {"source_repo": REPO, "commit": COMMIT, "source_path": "cat/cat (1).png"}
    assert fetch.file_url("http://h", row) == f"http://h/{REPO}/{COMMIT}/cat/cat%20%281%29.png"


def test_base_url_from_environment(monkeypatch):
    monkeypatch.setenv("STUDY_DATA_URL", "http://mirror.example/")
    assert fetch.resolve_base_url() == "http://mirror.example"
    assert fetch.resolve_base_url("http://given") == "http://given"
    monkeypatch.delenv("STUDY_DATA_URL")
    assert fetch.resolve_base_url() == fetch.DEFAULT_BASE_URL


# --- a fake upstream --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(fetch, "RETRY_DELAY", 0)


@pytest.fixture
def upstream(tmp_path):
    """Files laid out as <repo>/<commit>/<source_path>, and a manifest for them."""
    served = tmp_path / "served"
    for upstream_path, data in FILES.values():
        f = served / REPO / COMMIT / upstream_path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    manifest = tmp_path / "tiny-zoo.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(fetch.COLUMNS)
        for path, (upstream_path, data) in FILES.items():
            w.writerow([path, path.split("/")[0], REPO, COMMIT, upstream_path, git_blob_sha1(data)])
    return served, {"tiny-zoo": manifest}


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class Corrupting(Quiet):
    """Serves one file with a flipped byte."""
    def do_GET(self):
        if "Dog%20photo" not in self.path:
            return super().do_GET()
        data = bytearray((Path(self.directory) / REPO / COMMIT / "dog/Dog photo 1.jpg").read_bytes())
        data[100] ^= 0xFF
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(bytes(data))


class Interrupting(Quiet):
    """Promises a whole file, sends half of it and hangs up."""
    def do_GET(self):
        data = (Path(self.directory) / REPO / COMMIT / "dog/Dog photo 1.jpg").read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True


@pytest.fixture
def serve():
    servers = []

    def start(directory, handler=Quiet):
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_fetch_then_resume(tmp_path, upstream, serve):
    served, manifests = upstream
    url, root = serve(served), tmp_path / "data"
    report = fetch_data(root, base_url=url, manifests=manifests, progress=False)
    assert report == {"downloaded": len(FILES), "present": 0, "failed": []}
    for path, (_, data) in FILES.items():
        assert (root / "tiny-zoo" / path).read_bytes() == data
    assert (root / "tiny-zoo.csv").read_bytes() == manifests["tiny-zoo"].read_bytes()
    assert not list(root.rglob("*.part"))

    # a rerun only checks hashes; a file damaged locally is fetched again
    (root / "tiny-zoo" / "cat/cat_2.png").write_bytes(b"damaged")
    report = fetch_data(root, base_url=url, manifests=manifests, workers=1, progress=False)
    assert report == {"downloaded": 1, "present": len(FILES) - 1, "failed": []}
    assert (root / "tiny-zoo" / "cat/cat_2.png").read_bytes() == b"another cat"


def test_corrupted_file_is_never_kept(tmp_path, upstream, serve):
    served, manifests = upstream
    root = tmp_path / "data"
    with pytest.raises(StudyError, match=r"1 of 4 files.*tiny-zoo/dog/dog_1\.jpg: hash mismatch.*STUDY_DATA"):
        fetch_data(root, base_url=serve(served, Corrupting), manifests=manifests, progress=False)
    assert not (root / "tiny-zoo" / "dog/dog_1.jpg").exists()
    assert not list(root.rglob("*.part"))
    assert (root / "tiny-zoo" / "cat/cat (1).png").exists() is False  # stored under `path`, not upstream name
    assert (root / "tiny-zoo" / "cat/cat_1.png").read_bytes() == FILES["cat/cat_1.png"][1]
    assert not (root / "tiny-zoo.csv").exists()  # an incomplete folder gets no manifest


def test_interrupted_transfer_then_good_run(tmp_path, upstream, serve):
    served, manifests = upstream
    root = tmp_path / "data"
    with pytest.raises(StudyError, match="interrupted after"):
        fetch_data(root, base_url=serve(served, Interrupting), manifests=manifests, progress=False)
    assert not [p for p in root.rglob("*") if p.is_file()]  # nothing under any name, not even .part
    report = fetch_data(root, base_url=serve(served), manifests=manifests, progress=False)
    assert report["downloaded"] == len(FILES) and not report["failed"]


def test_missing_file_is_not_retried(tmp_path, upstream, serve):
    served, manifests = upstream
    (served / REPO / COMMIT / "cat/cat (2).png").unlink()
    with pytest.raises(StudyError, match=r"cat/cat_2\.png: HTTP 404"):
        fetch_data(tmp_path / "data", base_url=serve(served), manifests=manifests, progress=False)


def closed_port_url():
    with socket.socket() as s:  # bind then release a port, so nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_server_gives_one_clear_message(tmp_path, upstream):
    _, manifests = upstream
    with pytest.raises(StudyError) as info:
        fetch_data(tmp_path / "data", base_url=closed_port_url(), manifests=manifests, progress=False)
    message = str(info.value)
    assert message.startswith("could not fetch the data: cannot connect to http://127.0.0.1:")
    assert "4 of 4 files" in message and "STUDY_DATA" in message and "\n" not in message


def test_network_outage_stops_early(tmp_path, monkeypatch):
    """With many files and no network, give up after a few instead of trying every file three times."""
    manifest = tmp_path / "many.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fetch.COLUMNS)
        w.writerows([f"f{i}.wav", "x", REPO, COMMIT, f"f{i}.wav", "0" * 40] for i in range(200))
    calls = []
    real_urlopen = fetch.urlopen
    monkeypatch.setattr(fetch, "urlopen", lambda *a, **k: calls.append(1) or real_urlopen(*a, **k))
    with pytest.raises(StudyError, match=r"could not fetch the data.*200 of 200 files"):
        fetch_data(tmp_path / "data", base_url=closed_port_url(), manifests={"many": manifest}, progress=False)
    assert len(calls) < 60


def test_bad_manifest_is_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,class\na.wav,cat\n")
    with pytest.raises(StudyError, match=r"bad\.csv lacks column"):
        fetch_data(tmp_path / "data", base_url="http://127.0.0.1:9", manifests={"x": bad}, progress=False)
    bad.write_text(",".join(fetch.COLUMNS) + "\n../../evil,cat,r,c,p,h\n")
    with pytest.raises(StudyError, match="must be relative"):
        fetch_data(tmp_path / "data", base_url="http://127.0.0.1:9", manifests={"x": bad}, progress=False)


# --- the shipped manifests against the real data ------------------------------------------------

def test_shipped_manifests_have_every_file():
    sizes = {name: len(fetch.read_manifest(path)) for name, path in fetch.SHIPPED_MANIFESTS.items()}
    assert sizes == {"animal-sounds": 875, "animal-images": 954}


REAL_DATA = data_root()


@pytest.mark.skipif(not (REAL_DATA / "animal-sounds").is_dir(), reason=f"no real data at {REAL_DATA}")
@pytest.mark.parametrize("name", ["animal-sounds", "animal-images"])
def test_real_data_matches_shipped_manifest(name):
    rows = fetch.read_manifest(fetch.SHIPPED_MANIFESTS[name])
    for row in random.Random(0).sample(rows, 30):
        assert file_blob_sha1(REAL_DATA / name / row["path"]) == row["git_blob_sha1"], row["path"]
    if (REAL_DATA / f"{name}.csv").is_file():  # the shipped copy is the shared one, byte for byte
        assert (REAL_DATA / f"{name}.csv").read_bytes() == fetch.SHIPPED_MANIFESTS[name].read_bytes()
