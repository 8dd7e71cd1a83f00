"""Files of one registry version: atomic writes, the SHA-256 manifest and its verification.

A version directory holds the payload files (``model.pkl``, ``info.json``), ``manifest.json``
(``{"format": 1, "files": {name: sha256}}``) and ``manifest.sha256`` (the manifest's own
hash, in ``sha256sum`` format). ``read_verified`` reads every file into memory, checks the
sidecar, the file set and every hash, and only then hands the bytes back, so the bytes that
were checked are the bytes that get unpickled (no check-then-reopen race).

This detects corruption and careless edits, not a determined attacker who can rewrite the
manifest and the sidecar together: that needs a signing key kept outside the registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ultrathink.errors import PersistenceError

MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest.sha256"
MANIFEST_FORMAT = 1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_RESTORE = "restore the version directory from a backup or save the model again; nothing was loaded"


class ModelIntegrityError(PersistenceError):
    """A stored model version failed hash verification; nothing was unpickled."""


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def write_bytes_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` via a temporary sibling and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write_bytes_durably(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_version_files(directory: Path, payload: dict[str, bytes]) -> None:
    """Write ``payload`` files, then the manifest of their hashes, then the manifest's hash."""
    for name, data in payload.items():
        write_bytes_durably(directory / name, data)
    manifest = {
        "format": MANIFEST_FORMAT,
        "files": {name: sha256_hex(data) for name, data in sorted(payload.items())},
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    write_bytes_durably(directory / MANIFEST, manifest_bytes)
    sidecar = f"{sha256_hex(manifest_bytes)}  {MANIFEST}\n".encode()
    write_bytes_durably(directory / MANIFEST_HASH, sidecar)
    fsync_dir(directory)


def read_verified(directory: Path, only: set[str] | None = None) -> dict[str, bytes]:
    """Return the verified bytes of the payload files of a version directory.

    Parameters
    ----------
    directory : Path
        The version directory.
    only : set of str or None
        Read and hash only these payload files (the file set is still checked in full);
        None: every file.

    Raises
    ------
    ModelIntegrityError
        When the manifest, the file set or any file's hash does not match.
    """
    manifest = _read_manifest(directory)
    expected: dict[str, str] = manifest["files"]
    _check_file_set(directory, set(expected))
    verified: dict[str, bytes] = {}
    for name in sorted(expected if only is None else only & set(expected)):
        data = read_regular_file(directory / name)
        actual = sha256_hex(data)
        if actual != expected[name]:
            raise ModelIntegrityError(
                f"{directory / name}: SHA-256 does not match the manifest (expected "
                f"{expected[name]}, actual {actual}); the file was modified or corrupted. "
                "Restore it from a backup or save the model again as a new version; "
                "it was not loaded"
            )
        verified[name] = data
    return verified


def read_regular_file(path: Path, fix: str = _RESTORE) -> bytes:
    """Return the bytes of the regular file ``path`` (symlinks followed).

    Raises
    ------
    ModelIntegrityError
        When it is missing, a directory, or not a regular file (a FIFO would block forever).
    PersistenceError
        When it exists but cannot be read (permissions, I/O error).

    ``fix`` ends the integrity messages: what the user should do.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ModelIntegrityError(f"{path}: missing; {fix}") from None
    except IsADirectoryError:
        raise _not_regular(path, "a directory", fix) from None
    except OSError as exc:
        raise PersistenceError(f"{path}: cannot be read ({_reason(exc)}); {_FIX_ACCESS}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a special file"
            raise _not_regular(path, kind, fix)
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise PersistenceError(f"{path}: cannot be read ({_reason(exc)}); {_FIX_ACCESS}") from None
    finally:
        os.close(fd)


_FIX_ACCESS = "check its permissions and the disk, then retry"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _not_regular(path: Path, kind: str, fix: str) -> ModelIntegrityError:
    return ModelIntegrityError(f"{path}: is {kind}, not a regular file; {fix}")


def parse_json_file(path: Path, data: bytes, fix: str = _RESTORE) -> Any:
    """Parse JSON ``data`` read from ``path``; ``ModelIntegrityError`` when it is not JSON."""
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ModelIntegrityError(f"{path}: not valid UTF-8 JSON ({detail}); {fix}") from None


def _read_manifest(directory: Path) -> dict[str, Any]:
    manifest_path, sidecar_path = directory / MANIFEST, directory / MANIFEST_HASH
    data = read_regular_file(manifest_path)
    sidecar = read_regular_file(sidecar_path).decode("utf-8", errors="replace").split()
    expected = sidecar[0] if sidecar else "<empty>"
    actual = sha256_hex(data)
    if actual != expected:
        raise ModelIntegrityError(
            f"{manifest_path}: SHA-256 does not match {MANIFEST_HASH} (expected "
            f"{expected[:64]!r}, actual {actual}); the manifest was edited. Restore it from a "
            "backup or save the model again; nothing was loaded"
        )
    manifest = parse_json_file(manifest_path, data)
    if not isinstance(manifest, dict):
        raise ModelIntegrityError(
            f"{manifest_path}: must be a JSON object, was {type(manifest).__name__}; {_RESTORE}"
        )
    if manifest.get("format") != MANIFEST_FORMAT:
        found = str(manifest.get("format"))[:40]
        raise ModelIntegrityError(
            f"{manifest_path}: unsupported manifest format {found!r}, expected "
            f"{MANIFEST_FORMAT}; this registry was written by another version"
        )
    _check_manifest_files(manifest_path, manifest.get("files"))
    return manifest


def _check_manifest_files(path: Path, files: Any) -> None:
    if not isinstance(files, dict) or not files:
        raise ModelIntegrityError(
            f"{path}: 'files' must be an object of file name to SHA-256, was "
            f"{type(files).__name__}; {_RESTORE}"
        )
    for name, digest in files.items():
        plain = name not in ("", ".", "..", MANIFEST, MANIFEST_HASH) and "/" not in name
        if not plain or not isinstance(digest, str) or not _SHA256_RE.match(digest):
            raise ModelIntegrityError(
                f"{path}: entry {name[:80]!r}: {str(digest)[:80]!r} is not a file name with a "
                f"hex SHA-256; {_RESTORE}"
            )


def _check_file_set(directory: Path, expected: set[str]) -> None:
    try:
        present = {p.name for p in directory.iterdir()} - {MANIFEST, MANIFEST_HASH}
    except OSError as exc:
        raise PersistenceError(
            f"{directory}: cannot be listed ({_reason(exc)}); {_FIX_ACCESS}"
        ) from None
    missing, extra = sorted(expected - present), sorted(present - expected)
    if missing or extra:
        raise ModelIntegrityError(
            f"{directory}: files differ from the manifest (missing {missing}, unexpected "
            f"{extra}); restore the missing files / remove the unexpected ones from a "
            "backup, or save the model again; nothing was loaded"
        )
