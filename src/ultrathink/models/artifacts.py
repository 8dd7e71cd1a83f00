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
from pathlib import Path
from typing import Any

from ultrathink.errors import PersistenceError

MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest.sha256"
MANIFEST_FORMAT = 1


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
        data = (directory / name).read_bytes()
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


def _read_manifest(directory: Path) -> dict[str, Any]:
    manifest_path, sidecar_path = directory / MANIFEST, directory / MANIFEST_HASH
    for path in (manifest_path, sidecar_path):
        if not path.is_file():
            raise ModelIntegrityError(
                f"{path}: missing; the version cannot be verified, so it is refused. "
                "Restore the version directory from a backup or save the model again"
            )
    data = manifest_path.read_bytes()
    sidecar = sidecar_path.read_text(encoding="utf-8", errors="replace").split()
    expected = sidecar[0] if sidecar else "<empty>"
    actual = sha256_hex(data)
    if actual != expected:
        raise ModelIntegrityError(
            f"{manifest_path}: SHA-256 does not match {MANIFEST_HASH} (expected {expected}, "
            f"actual {actual}); the manifest was edited. Restore it from a backup or save "
            "the model again; nothing was loaded"
        )
    manifest = json.loads(data)
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
        raise ModelIntegrityError(
            f"{manifest_path}: unsupported manifest format {manifest.get('format')!r}, "
            f"expected {MANIFEST_FORMAT}; this registry was written by another version"
        )
    return manifest


def _check_file_set(directory: Path, expected: set[str]) -> None:
    present = {p.name for p in directory.iterdir()} - {MANIFEST, MANIFEST_HASH}
    missing, extra = sorted(expected - present), sorted(present - expected)
    if missing or extra:
        raise ModelIntegrityError(
            f"{directory}: files differ from the manifest (missing {missing}, unexpected "
            f"{extra}); restore the missing files / remove the unexpected ones from a "
            "backup, or save the model again; nothing was loaded"
        )
