"""Download the study's data from its public repositories and verify every file by its git blob hash.

Each manifest row names a file (`path`, relative to its folder), where it lives upstream
(`source_repo` @ `commit` : `source_path`) and its git blob sha1. A file only ever appears under its
final name after its hash checks out, so an interrupted run leaves nothing half-written behind and a
rerun simply resumes: files already present with the right hash are skipped.
"""
from __future__ import annotations

import csv
import http.client
import hashlib
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from helpers.config import StudyError

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
SHIPPED_MANIFESTS = {name: MANIFEST_DIR / f"{name}.csv" for name in ("animal-sounds", "animal-images")}
# The independent evaluation data (params/datasets/external.yaml): folder -> manifest.
EXTERNAL_MANIFESTS = {name: MANIFEST_DIR / f"external-{name}.csv" for name in ("sounds", "images")}
COLUMNS = ("path", "class", "source_repo", "commit", "source_path", "git_blob_sha1")

ATTEMPTS = 3          # one try plus a couple of retries per file
RETRY_DELAY = 1.0     # seconds, times the attempt number (tests set it to 0)
TIMEOUT = 60          # seconds per request without any bytes arriving
UNREACHABLE_LIMIT = 8  # this many files failing to connect, with no success yet, means the network is down
CHUNK = 1 << 16


def git_blob_sha1(data: bytes) -> str:
    """Git's blob hash: sha1 of b"blob <size>\\0" + bytes (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_blob_sha1(path) -> str:
    """git_blob_sha1 of a file's bytes, read in chunks so large files need little memory."""
    path = Path(path)
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def resolve_base_url(url: str | None = None) -> str:
    """The server to fetch from: the argument, else $STUDY_DATA_URL, else GitHub's raw file server."""
    return (url or os.environ.get("STUDY_DATA_URL") or DEFAULT_BASE_URL).rstrip("/")


def file_url(base: str, row: dict) -> str:
    """Where one manifest row lives upstream; paths are quoted because they hold spaces and parentheses."""
    q = urllib.parse.quote
    return f"{base}/{q(row['source_repo'])}/{q(row['commit'])}/{q(row['source_path'])}"


def read_manifest(path) -> list[dict]:
    """The manifest's rows, after checking its columns and that no path escapes its folder."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as e:
        raise StudyError(f"cannot read manifest {path}: {e}; reinstall the package or pass an existing manifest") from e
    if missing:
        raise StudyError(f"manifest {path} lacks column(s) {missing}; it needs {list(COLUMNS)}")
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        p = Path(row["path"])
        if not row["path"] or p.is_absolute() or ".." in p.parts:
            raise StudyError(f"manifest {path} line {i}: path {row['path']!r} must be relative, inside its folder")
    return rows


class _Unreachable(Exception):
    """The server could not be reached at all (refused, DNS, no network), as opposed to a bad file."""


class _Fetcher:
    """Fetches manifest rows one by one from worker threads; notices when the server is unreachable."""

    def __init__(self, base: str):
        self.base = base
        self.lock = threading.Lock()
        self.reached = False        # any HTTP response at all means the network works
        self.unreachable = 0        # files that failed only because the server could not be reached
        self.abort = threading.Event()

    def fetch(self, row: dict, dest: Path) -> str:
        """Make `dest` hold the verified file; return "present" or "downloaded", raise on failure."""
        want = row["git_blob_sha1"].lower()
        if dest.is_file() and file_blob_sha1(dest) == want:
            return "present"
        url = file_url(self.base, row)
        part = dest.with_name(f".{dest.name}.part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        error = None
        for attempt in range(ATTEMPTS):
            if self.abort.is_set():
                raise _Unreachable(f"not tried, {self.base} is unreachable")
            if attempt:
                time.sleep(RETRY_DELAY * attempt)
            try:
                self._download(url, part)
                got = file_blob_sha1(part)
                if got != want:
                    raise ValueError(f"hash mismatch (got {got[:12]}, manifest says {want[:12]}) from {url}")
                os.replace(part, dest)  # atomic: the final name only ever holds a verified file
                return "downloaded"
            except urllib.error.HTTPError as e:
                error = ValueError(f"HTTP {e.code} {e.reason} at {url}")
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    break  # the file is not there: retrying will not help
            except (_Unreachable, ValueError) as e:  # no connection, hash mismatch, short transfer
                error = e
            except (OSError, http.client.HTTPException) as e:  # reset, timeout or truncation mid-transfer
                error = ValueError(f"{type(e).__name__} {e} from {url}")
            finally:
                part.unlink(missing_ok=True)
        if isinstance(error, _Unreachable):
            with self.lock:
                self.unreachable += 1
                if not self.reached and self.unreachable >= UNREACHABLE_LIMIT:
                    self.abort.set()  # stop hammering a dead network: one clear message instead of 1829
        raise error

    def _download(self, url: str, part: Path) -> None:
        """Stream `url` into `part`, checking the byte count against Content-Length."""
        request = Request(url, headers={"User-Agent": "menagerie-fetch"})
        try:
            response = urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError:
            with self.lock:
                self.reached = True
            raise
        except (urllib.error.URLError, OSError) as e:
            raise _Unreachable(f"cannot connect to {self.base}: {getattr(e, 'reason', e)}") from e
        with self.lock:
            self.reached = True
        with response, open(part, "wb") as f:
            expected = response.headers.get("Content-Length")
            size = 0
            # read(n) does not raise when the server closes early, so count the bytes ourselves
            while chunk := response.read(CHUNK):
                f.write(chunk)
                size += len(chunk)
        if expected is not None and size != int(expected):
            raise ValueError(f"transfer interrupted after {size} of {expected} bytes from {url}")


def _copy_manifest(src: Path, dst: Path) -> None:
    """Put the manifest next to its folder (as in the shared data root), unless an identical copy is there."""
    if dst.is_file() and dst.read_bytes() == src.read_bytes():
        return
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def fetch_data(root: Path, base_url: str | None = None, manifests: dict[str, Path] | None = None,
               workers: int = 4, progress: bool = True) -> dict:
    """Download every manifest's files into root/<folder>/<path>, verified; skip files already there.

    `manifests` maps a folder name to its manifest CSV (default: the two shipped ones). Returns
    {"downloaded": n, "present": n, "failed": [{"path", "reason"}]}; if anything failed, the other
    files are still fetched and then StudyError explains what failed and what to do.
    """
    root = Path(root).expanduser()
    base = resolve_base_url(base_url)
    manifests = SHIPPED_MANIFESTS if manifests is None else manifests
    if not isinstance(workers, int) or workers < 1:
        raise StudyError(f"workers={workers!r} must be a positive integer")
    jobs = [(folder, Path(src), row) for folder, src in manifests.items() for row in read_manifest(src)]

    fetcher = _Fetcher(base)
    report = {"downloaded": 0, "present": 0, "failed": []}
    unreachable = []
    bar = tqdm(total=len(jobs), unit="file", desc=f"fetching data into {root}", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(fetcher.fetch, row, root / folder / row["path"]): (folder, row)
                   for folder, _, row in jobs}
        for future in as_completed(futures):
            folder, row = futures[future]
            try:
                report[future.result()] += 1
            except (_Unreachable, ValueError, OSError) as e:
                report["failed"].append({"path": f"{folder}/{row['path']}", "reason": str(e)})
                if isinstance(e, _Unreachable):
                    unreachable.append(str(e))
            bar.update()
    except BaseException:
        fetcher.abort.set()  # e.g. Ctrl-C: finish the files in flight (still atomic), start no more
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown()

    failed_folders = {f["path"].split("/", 1)[0] for f in report["failed"]}
    for folder, src in manifests.items():
        if folder not in failed_folders:  # only a complete folder gets its manifest, like the shared root
            _copy_manifest(Path(src), root / f"{folder}.csv")

    failed = report["failed"]
    if failed:
        failed.sort(key=lambda f: f["path"])
        fix = (f"Check your network connection and rerun (files already verified are kept), or set "
               f"STUDY_DATA to an existing copy of the data, or set STUDY_DATA_URL "
               f"to a mirror laid out as <source_repo>/<commit>/<source_path>.")
        if len(unreachable) == len(failed):
            raise StudyError(f"could not fetch the data: {unreachable[0]} ({len(failed)} of {len(jobs)} files "
                             f"not fetched, into {root}). {fix}")
        first = "; ".join(f"{f['path']}: {f['reason']}" for f in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise StudyError(f"{len(failed)} of {len(jobs)} files could not be fetched into {root} "
                         f"({report['downloaded']} downloaded, {report['present']} already present): "
                         f"{first}{more}. Nothing unverified was kept under its final name. {fix}")
    return report
