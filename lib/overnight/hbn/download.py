"""Fetch HBN releases from their public bucket (``make data``): only the files asked for,
in parallel, verified and resumable.

- The first listing request is the probe: a bucket that cannot be reached fails within
  seconds (``[data] connect_timeout_s``, ``probe_read_timeout_s``, ``probe_attempts``),
  before anything is written; a release that is not in the bucket is an error naming it.
- A local file whose size, and MD5 where there is one to compare, matches the listing is
  kept; a missing, truncated or altered one is fetched again. The MD5 is the ETag's when
  the object was sent in one part; a multipart ETag (``...-N``) is no MD5 of the file, so
  there the manifest's MD5 of the bytes fetched stands in, else the size alone decides.
- What is still to fetch must fit in the free space, checked before fetching.
- Each file is written to a temporary file beside it (``atomic.atomic_path``) and renamed
  once its size and MD5 match: a kill leaves only a hidden ``.tmp`` file, which the next
  run removes before it fetches what is missing.
- A manifest in each release folder (``MANIFEST``) records every file in place: key,
  size, ETag, the MD5 of the local bytes and when they were fetched or first verified.

Requests are unsigned (public buckets, no credentials), and the endpoint comes from
boto3's own settings, so ``AWS_ENDPOINT_URL_S3`` points it at a mirror or a local server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import urllib3
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from overnight import atomic, cli
from overnight.checks import as_path
from overnight.config import DataConfig
from overnight.hbn.bids import PARTICIPANTS_FILE, TASK
from overnight.hbn.releases import ReleaseLocation
from overnight.provenance import code_version

log = logging.getLogger(__name__)

MANIFEST = ".manifest.json"  # in each release folder; hidden, so the tree stays plain BIDS
ALL_TASKS = "all"  # tasks=("all",) fetches every file of a release
DEFAULT_TASKS = (TASK,)
_LOCK = ".download.lock"  # in the data folder: one download writes there at a time
# The root files a task's recordings need beside them (participants.tsv gives each
# subject's release; eegdash expects dataset_description.json).
_ROOT_FILES = ("dataset_description.json", PARTICIPANTS_FILE)
_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")
_CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """A download that cannot go on; the message is one line for the user."""


@dataclass(frozen=True)
class RemoteFile:
    """One object of a release, as the listing gave it."""

    key: str
    path: str  # below the release folder, "/"-separated
    size: int  # bytes
    etag: str  # without its quotes

    @property
    def md5(self) -> str | None:
        """The ETag when it is the MD5 of the bytes (an object sent in one part)."""
        return self.etag if _PLAIN_MD5.fullmatch(self.etag) else None


@dataclass
class _Release:
    """One release's plan and what is in place so far."""

    location: ReleaseLocation
    folder: Path
    endpoint: str
    listed: int  # objects under the prefix
    files: list[RemoteFile]  # those asked for
    todo: list[RemoteFile] = field(default_factory=list)  # those still to fetch
    in_place: dict[str, dict[str, Any]] = field(default_factory=dict)  # manifest entries
    fetched_bytes: int = 0
    failed: list[str] = field(default_factory=list)


class _Mismatch(Exception):
    """The bytes that arrived are not the object the listing describes."""


class _Stopped(Exception):
    """The download was stopped (Ctrl-C, a full disk) while this file was in flight."""


# A stream cut, a timeout, a reset connection, wrong bytes: worth another attempt.
_RETRYABLE = (BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, _Mismatch)


def select_files(files: Sequence[RemoteFile], tasks: Sequence[str]) -> list[RemoteFile]:
    """The files of ``tasks``: their recordings with every sidecar (``_events.tsv``,
    ``_eeg.json``, ``_channels.tsv``, EEGLAB's ``.fdt``; any file whose name holds
    ``task-<name>_``), plus the root's ``participants.tsv`` and ``dataset_description.json``.

    Parameters
    ----------
    files : sequence of RemoteFile
        A release's listing.
    tasks : sequence of str
        BIDS task names, or ``("all",)`` for every file.

    Returns
    -------
    list of RemoteFile
        Those files, in the listing's order.

    Raises
    ------
    TypeError
        ``tasks`` is not a sequence of str.
    ValueError
        ``tasks`` is empty, or names ``all`` beside a task.
    """
    tasks = check_tasks(tasks)
    if tasks == (ALL_TASKS,):
        return list(files)
    marks = tuple(f"task-{task}_" for task in tasks)

    def wanted(path: str) -> bool:
        name = PurePosixPath(path)
        return ((len(name.parts) == 1 and name.name in _ROOT_FILES)
                or any(mark in name.name for mark in marks))

    return [f for f in files if wanted(f.path)]


def check_tasks(tasks: Any) -> tuple[str, ...]:
    """``tasks`` as a tuple of BIDS task names, or ``("all",)``; TypeError or ValueError
    (as ``select_files``) for anything else."""
    if isinstance(tasks, str) or not all(isinstance(t, str) for t in tasks):
        raise TypeError(f"tasks={tasks!r}: expected a sequence of task names (str)")
    tasks = tuple(tasks)
    if not tasks or (ALL_TASKS in tasks and len(tasks) > 1):
        raise ValueError(f"tasks={list(tasks)!r}: expected task names, e.g. [{TASK!r}], "
                         f"or [{ALL_TASKS!r}] alone")
    return tasks


def download_releases(locations: Sequence[ReleaseLocation], data_dir: str | os.PathLike[str],
                      cfg: DataConfig, tasks: Sequence[str] = DEFAULT_TASKS,
                      progress: bool = True) -> list[dict[str, Any]]:
    """Fetch releases into ``data_dir/<location.folder>/``; keep what is already whole.

    Parameters
    ----------
    locations : sequence of ReleaseLocation
        The releases (``releases.locate_release``).
    data_dir : str or PathLike
        The data folder; each release gets the folder of its location below it.
    cfg : DataConfig
        Transfers at once, timeouts and retries (``[data]``).
    tasks : sequence of str, default ("contrastChangeDetection",)
        The BIDS tasks whose files to fetch, or ``("all",)`` for every file.
    progress : bool, default True
        Progress bars: checking the local files, then fetching (bytes, with files).

    Returns
    -------
    list of dict
        Per release: ``release``, ``folder``, ``listed`` (objects in the bucket),
        ``selected``, ``kept`` (already whole), ``fetched``, ``fetched_bytes``.

    Raises
    ------
    DownloadError
        The bucket cannot be reached or refuses, a release is not there or has no file of
        ``tasks``, another download writes to ``data_dir``, the free space is short, or
        files failed after every attempt (the others are kept; run again).
    atomic.DiskFullError
        The disk filled while fetching (what is complete is kept).
    """
    data_dir = as_path(data_dir, "data_dir")
    tasks = check_tasks(tasks)
    clients = _Clients(cfg)
    releases = [_list_release(location, data_dir, clients, tasks)
                for location in dict.fromkeys(locations)]  # each once, in order
    data_dir.mkdir(parents=True, exist_ok=True)
    with _lock(data_dir):
        for release in releases:
            for partial in atomic.remove_partial_files(release.folder):
                log.info("removed %s, left by a download that was stopped", partial)
            _check_local_files(release, cfg, progress)
        _check_free_space(data_dir, releases)
        try:
            _fetch(releases, clients, cfg, progress)
        finally:
            for release in releases:
                _write_manifest(release, tasks, cfg)
    failed = [message for release in releases for message in release.failed]
    if failed:
        raise DownloadError(f"{len(failed)} file(s) could not be fetched, the first: "
                            f"{failed[0]}; the other files are in place: run again to fetch "
                            "the rest")
    return [{"release": r.location.name, "folder": str(r.folder), "listed": r.listed,
             "selected": len(r.files), "kept": len(r.files) - len(r.todo),
             "fetched": len(r.todo), "fetched_bytes": r.fetched_bytes} for r in releases]


class _Clients:
    """The S3 clients, one per region and kind, made in the main thread (making a client
    is not thread-safe; using one is)."""

    def __init__(self, cfg: DataConfig) -> None:
        self._cfg = cfg
        self._made: dict[tuple[str, bool], Any] = {}

    def get(self, region: str, probe: bool = False) -> Any:
        """The client of ``region``; ``probe``: the short timeouts of the first request."""
        if (region, probe) not in self._made:
            cfg = self._cfg
            config = BotoConfig(
                signature_version=UNSIGNED, connect_timeout=cfg.connect_timeout_s,
                read_timeout=cfg.probe_read_timeout_s if probe else cfg.read_timeout_s,
                retries={"total_max_attempts": cfg.probe_attempts if probe
                         else cfg.request_attempts, "mode": "standard"},
                max_pool_connections=cfg.workers)
            self._made[region, probe] = boto3.session.Session().client(
                "s3", region_name=region, config=config)
        return self._made[region, probe]


def _list_release(location: ReleaseLocation, data_dir: Path, clients: _Clients,
                  tasks: tuple[str, ...]) -> _Release:
    """Every object of the release, those of ``tasks`` selected."""
    files: list[RemoteFile] = []
    token = None
    while True:
        # the first page through the probe client: an unreachable bucket fails fast
        client = clients.get(location.region, probe=token is None)
        page = _list_page(client, location, token)
        files += [RemoteFile(obj["Key"], _relative(obj["Key"], location), obj["Size"],
                             obj["ETag"].strip('"'))
                  for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    endpoint = clients.get(location.region).meta.endpoint_url
    if not files:
        raise DownloadError(f"{location.name} is not at {location.url} ({endpoint}): the "
                            "listing is empty. Is the release name right, and does this "
                            "endpoint hold it?")
    selected = select_files(files, tasks)
    if all(f.path in _ROOT_FILES for f in selected):
        raise DownloadError(f"{location.url} holds {len(files)} files, none of task(s) "
                            f"{', '.join(tasks)}; tasks=all fetches every file")
    log.info("%s: %d of the %d files at %s (%s) are of task(s) %s: %s", location.name,
             len(selected), len(files), location.url, endpoint, ", ".join(tasks),
             atomic.format_bytes(sum(f.size for f in selected)))
    return _Release(location, data_dir / location.folder, endpoint, len(files), selected)


def _list_page(client: Any, location: ReleaseLocation, token: str | None) -> dict[str, Any]:
    request = {"Bucket": location.bucket, "Prefix": location.prefix}
    if token is not None:
        request["ContinuationToken"] = token
    where = f"s3://{location.bucket} at {client.meta.endpoint_url}"
    try:
        return client.list_objects_v2(**request)
    except BotoCoreError as exc:
        raise DownloadError(f"cannot reach {where}: {exc}. Check the network (or "
                            "AWS_ENDPOINT_URL_S3, when it points at a mirror) and run "
                            "again") from None
    except ClientError as exc:
        raise DownloadError(f"listing {location.url} at {client.meta.endpoint_url} "
                            f"failed: {_client_error(exc)}") from None


def _relative(key: str, location: ReleaseLocation) -> str:
    """The key's path below the release folder; an error for one that would leave it."""
    path = key[len(location.prefix):]
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in (".", "..") for p in parts):
        raise DownloadError(f"{location.url}: key {key!r} does not name a file below the "
                            "release folder; refusing to write it")
    return path


def _client_error(exc: ClientError) -> str:
    """An S3 error answer in words, with what it means here."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    meaning = {
        "NoSuchBucket": "there is no such bucket at this endpoint",
        "NoSuchKey": "the object is gone since it was listed; run again",
        "PreconditionFailed": "the object changed since it was listed; run again",
        "AccessDenied": "anonymous access is refused (the object or bucket is not public)",
        "403": "anonymous access is refused (the object or bucket is not public)",
        "404": "not found: no such bucket at this endpoint; is it an S3 server?",
    }.get(code, error.get("Message", "") or "an error answer")
    return f"{code or status} ({meaning})"


def _check_local_files(release: _Release, cfg: DataConfig, progress: bool) -> None:
    """Which selected files are whole in the folder already (hashed in parallel: a release
    is tens of GB); fills ``todo`` and ``in_place``."""
    known = _read_manifest(release.folder)
    with ThreadPoolExecutor(cfg.workers) as pool:
        checks = {pool.submit(_local_md5, release.folder / f.path, f, known.get(f.key)): f
                  for f in release.files}
        done: Iterator[Future] = as_completed(checks)
        if progress:
            done = cli.progress(done, total=len(checks), desc=f"check {release.location.name}",
                                unit="file")
        for check in done:
            file, md5 = checks[check], check.result()
            if md5 is None:
                release.todo.append(file)
                continue
            entry = known.get(file.key)
            same = entry is not None and entry.get("etag") == file.etag
            release.in_place[file.key] = _entry(file, md5, entry.get("time") if same else None)
    release.todo.sort(key=lambda f: f.key)
    log.info("%s: %d file(s) whole in %s, %d to fetch (%s)", release.location.name,
             len(release.in_place), release.folder, len(release.todo),
             atomic.format_bytes(sum(f.size for f in release.todo)))


def _local_md5(path: Path, file: RemoteFile, entry: dict[str, Any] | None) -> str | None:
    """The MD5 of the local copy when it is whole, else None."""
    try:
        if path.stat().st_size != file.size:
            return None
    except FileNotFoundError:
        return None
    md5 = atomic.md5_file(path)
    recorded = entry.get("md5") if entry is not None and entry.get("etag") == file.etag else None
    expected = file.md5 or recorded
    return md5 if expected is None or md5 == expected else None


def _check_free_space(data_dir: Path, releases: Sequence[_Release]) -> None:
    need = sum(f.size for release in releases for f in release.todo)
    free = shutil.disk_usage(data_dir).free
    if need > free:
        raise DownloadError(f"not enough free space in {data_dir}: the files still to fetch "
                            f"need {atomic.format_bytes(need)} and "
                            f"{atomic.format_bytes(free)} is free. Free some space, or set "
                            "DATA_DIR to a larger disk, then run again")


class _Tally:
    """Bytes and files fetched so far, shared by the transfer threads, and the bar."""

    def __init__(self, n_files: int, n_bytes: int, progress: bool) -> None:
        self._lock = threading.Lock()
        self._files, self._n_files = 0, n_files
        self._bar = cli.byte_progress(n_bytes, desc="fetch") if progress else None

    def add_bytes(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def add_file(self) -> None:
        with self._lock:
            self._files += 1
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self._files}/{self._n_files} files",
                                          refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _fetch(releases: Sequence[_Release], clients: _Clients, cfg: DataConfig,
           progress: bool) -> None:
    """Fetch every release's ``todo`` through one pool of ``cfg.workers`` threads."""
    work = [(release, file) for release in releases for file in release.todo]
    if not work:
        return
    stop = threading.Event()
    tally = _Tally(len(work), sum(file.size for _, file in work), progress)
    try:
        with ThreadPoolExecutor(cfg.workers) as pool:
            futures = {pool.submit(_fetch_file, clients.get(release.location.region),
                                   release, file, cfg, tally.add_bytes, stop): (release, file)
                       for release, file in work}
            try:
                for future in as_completed(futures):
                    _record(future, *futures[future], tally)
            except BaseException:
                # Ctrl-C or a full disk: the threads drop their temporary files and end
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        tally.close()


def _record(future: Future, release: _Release, file: RemoteFile, tally: _Tally) -> None:
    """Enter a finished transfer in its release; a failed one is kept for the end."""
    try:
        md5 = future.result()
    except DownloadError as exc:
        release.failed.append(str(exc))
        log.error("%s", exc)
        return
    release.in_place[file.key] = _entry(file, md5, None)
    release.fetched_bytes += file.size
    tally.add_file()


def _fetch_file(client: Any, release: _Release, file: RemoteFile, cfg: DataConfig,
                on_bytes: Callable[[int], None], stop: threading.Event) -> str:
    """Fetch one file, trying again with a growing wait; return the MD5 of its bytes."""
    for attempt in range(1, cfg.file_attempts + 1):
        sent = 0

        def count(n: int) -> None:
            nonlocal sent
            sent += n
            on_bytes(n)

        try:
            return _fetch_once(client, release.location.bucket, file,
                               release.folder / file.path, count, stop)
        except ClientError as exc:
            raise DownloadError(f"{file.key}: {_client_error(exc)}") from None
        except _RETRYABLE as exc:
            on_bytes(-sent)  # the bar counts these bytes again on the next attempt
            if attempt == cfg.file_attempts:
                raise DownloadError(f"{file.key}: {exc} ({attempt} attempts)") from None
            wait_s = cfg.retry_wait_s * 2 ** (attempt - 1)
            log.warning("%s: %s; attempt %d of %d in %.0f s", file.key, exc, attempt + 1,
                        cfg.file_attempts, wait_s)
            if stop.wait(wait_s):
                raise _Stopped() from None
    raise AssertionError("unreachable")  # pragma: no cover


def _fetch_once(client: Any, bucket: str, file: RemoteFile, target: Path,
                on_bytes: Callable[[int], None], stop: threading.Event) -> str:
    """One GET of the version listed (If-Match its ETag) into a temporary file beside
    ``target``, renamed onto it when the size and MD5 match the listing."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with atomic.atomic_path(target) as tmp:
        answer = client.get_object(Bucket=bucket, Key=file.key, IfMatch=f'"{file.etag}"')
        with contextlib.closing(answer["Body"]) as body, open(tmp, "wb") as fh:
            for chunk in body.iter_chunks(_CHUNK_BYTES):
                if stop.is_set():
                    raise _Stopped()
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                on_bytes(len(chunk))
        if size != file.size:
            raise _Mismatch(f"{size:,} bytes arrived, the listing says {file.size:,}")
        if file.md5 is not None and digest.hexdigest() != file.md5:
            raise _Mismatch(f"the bytes' MD5 {digest.hexdigest()} is not the ETag {file.md5}")
    return digest.hexdigest()


def _entry(file: RemoteFile, md5: str, fetched: str | None) -> dict[str, Any]:
    """The manifest's line for a file in place; ``fetched``: when, else now."""
    return {"key": file.key, "path": file.path, "size": file.size, "etag": file.etag,
            "md5": md5, "time": fetched or datetime.now(timezone.utc).isoformat(
                timespec="seconds")}


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The entries of the folder's manifest by key; none when it is missing or unreadable
    (then every file is checked against the listing alone)."""
    try:
        record = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return {entry["key"]: entry for entry in record["files"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s is unreadable (%s); checking every file against the listing",
                    folder / MANIFEST, exc)
        return {}


def _write_manifest(release: _Release, tasks: tuple[str, ...], cfg: DataConfig) -> None:
    """What is in place now, written atomically (also after a failed or stopped run)."""
    location = release.location
    missing = len(release.files) - len(release.in_place)
    atomic.write_json(release.folder / MANIFEST, {
        "release": location.release, "mini": location.mini, "source": location.source,
        "url": location.url, "endpoint": release.endpoint, "tasks": list(tasks),
        "complete": missing == 0, "missing": missing,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(), "config": {"data": dataclasses.asdict(cfg)},
        "files": sorted(release.in_place.values(), key=lambda entry: entry["key"]),
    })


@contextlib.contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's lock: two downloads into one folder would remove each
    other's temporary files."""
    fd = os.open(data_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("utf-8", "replace").strip() or "unknown"
            raise DownloadError(f"another download is writing to {data_dir} (process "
                                f"{holder}); let it finish, or stop it, then run again"
                                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
