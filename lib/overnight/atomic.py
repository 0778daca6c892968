"""Crash-safe writes: every file that matters is written beside its target and moved in place.

A crash at any moment leaves either the old file or the new one, never a partial one, and
so does a full disk: the write fails with ``DiskFullError``, which names the file, what it
had written and what is free.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PARTIAL_SUFFIX = ".tmp"  # with a leading dot: the temporary files of atomic_path
# A full disk, a full quota, a file-size limit (RLIMIT_FSIZE); h5py reports them only in
# its message, with the errno inside.
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "File too large",
                    f"errno = {errno.ENOSPC},", f"errno = {errno.EFBIG},",
                    f"errno = {errno.EDQUOT},")
# torch.save says only that its writer failed, as a RuntimeError
_TORCH_WRITE_FAILED = "PytorchStreamWriter failed writing file"


class DiskFullError(OSError):
    """A write the file system refused for want of space; the file it replaces is intact."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for want of space (or by a file-size limit)."""
    if isinstance(exc, RuntimeError):
        return _TORCH_WRITE_FAILED in str(exc)
    return isinstance(exc, OSError) and (exc.errno in _DISK_FULL_ERRNOS
                                         or any(t in str(exc) for t in _DISK_FULL_TEXTS))


def disk_full_error(target: str | os.PathLike[str], exc: OSError | RuntimeError,
                    needed_bytes: int) -> DiskFullError:
    """The error to raise for ``exc``: the file, the space it needed, the space free."""
    target = Path(target)
    folder = next((p for p in (target.parent, *target.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free
    code = getattr(exc, "errno", None)
    what = os.strerror(code) if code in _DISK_FULL_ERRNOS else "no space"
    return DiskFullError(code or errno.ENOSPC,
                         f"cannot write {target} ({what}): it needs more than "
                         f"{format_bytes(needed_bytes)} and {format_bytes(free)} is free on "
                         f"the file system of {folder}; the previous {target.name}, if any, "
                         "is intact. Free some space there, or move the folder to a larger "
                         "disk, and run again")


def format_bytes(n: float) -> str:
    """``512 B``, ``3.2 MB``, ``41.0 GB`` (powers of 1000, as df -H)."""
    units = ("B", "kB", "MB", "GB", "TB")
    rank = 0
    while abs(n) >= 1000 and rank < len(units) - 1:
        n, rank = n / 1000, rank + 1
    return f"{n:.0f} B" if rank == 0 else f"{n:.1f} {units[rank]}"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; move it onto ``target`` on success.

    The caller writes the temporary file by any means (h5py, torch.save, ...). On an
    exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + _PARTIAL_SUFFIX,
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like open()'s
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc):
            written = tmp.stat().st_size if tmp.exists() else 0
            raise disk_full_error(target, exc, written) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``target`` with ``data``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``target`` with ``text`` (UTF-8)."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Atomically replace ``target`` with ``obj`` as indented JSON."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_line(target: str | os.PathLike[str], line: str) -> None:
    """Append one line and flush it to disk (for JSON-lines histories and logs).

    A crash can at worst leave a truncated last line, which readers skip.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_json_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file, skipping a last line truncated by a crash."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    return _digest_file(path, hashlib.sha256())


def md5_file(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file's bytes (what S3 puts in the ETag of an object sent in one part)."""
    return _digest_file(path, hashlib.md5(usedforsecurity=False))


def _digest_file(path: str | os.PathLike[str], digest: Any) -> str:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (before a commit point
    that relies on them)."""
    for path in Path(folder).iterdir():
        if path.is_file():
            _fsync_file(path)
    _fsync_dir(Path(folder))


def remove_partial_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that a killed process left below ``folder`` before moving
    them into place; return them. Symlinks are not followed (a preflight slice links into
    the input data)."""
    partial = []
    for parent, _, names in os.walk(folder, followlinks=False):
        partial += [Path(parent, n) for n in names
                    if n.startswith(".") and n.endswith(_PARTIAL_SUFFIX)]
    for path in partial:
        path.unlink(missing_ok=True)
    return sorted(partial)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
