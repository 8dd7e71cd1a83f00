"""``ModelRegistry``: versioned, hash-verified model artefacts on disk.

Layout under ``root``::

    registry.json            production version, promotion stack and history (atomic writes)
    v0001/model.pkl          the pickled model
    v0001/info.json          metadata: features, params, data hash, metrics, train period, ...
    v0001/manifest.json      SHA-256 of every file above
    v0001/manifest.sha256    SHA-256 of manifest.json

A version is built in a hidden temporary directory and renamed into place, so a reader never
sees a half-written version. ``load`` verifies the manifest and every hash *before* anything
is unpickled. Saves and promotions take an exclusive ``flock`` on ``root/.lock``.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultrathink.core.clock import Clock, LiveClock
from ultrathink.core.times import iso_ns
from ultrathink.errors import PersistenceError
from ultrathink.models.artifacts import (
    ModelIntegrityError,
    fsync_dir,
    read_verified,
    replace_file_atomically,
    write_version_files,
)
from ultrathink.models.registry_meta import (
    INFO_FILE,
    MODEL_FILE,
    ModelInfo,
    build_info,
    check_save_args,
    info_from_json,
    library_versions,
)

__all__ = [
    "LoadedModel",
    "ModelInfo",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelRegistry",
    "PromotionEvent",
]

_VERSION_RE = re.compile(r"^v(\d{4,})$")
_STATE_FILE = "registry.json"


class ModelNotFoundError(PersistenceError):
    """A model version that does not exist, or an empty registry / promotion history."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified, unpickled model and its metadata."""

    model: Any
    info: ModelInfo

    def library_mismatches(self) -> dict[str, tuple[str, str]]:
        """Return ``{library: (saved, running)}`` for every library version that differs."""
        running = library_versions()
        return {
            lib: (saved, running.get(lib, "missing"))
            for lib, saved in self.info.versions.items()
            if running.get(lib, "missing") != saved
        }


@dataclass(frozen=True)
class PromotionEvent:
    """One entry of the promotion history: ``action`` is ``"promote"`` or ``"rollback"``."""

    action: str
    version: str
    previous: str | None
    ts_ns: int
    at: str = field(default="")


class ModelRegistry:
    """Versioned model artefacts in a directory, with promotion and rollback.

    Parameters
    ----------
    root : Path
        Registry directory (created on first save).
    clock : Clock or None
        Source of creation and promotion times; None: the system clock.
    """

    def __init__(self, root: Path | str, clock: Clock | None = None) -> None:
        self.root = Path(root)
        self._clock = clock if clock is not None else LiveClock()

    def save(
        self,
        model: Any,
        *,
        feature_names: builtins.list[str],
        params: dict[str, Any],
        data_hash: str,
        metrics: dict[str, Any],
        train_period: tuple[int, int],
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Store ``model`` and its metadata as the next version; return its id (``"v0001"``…).

        Parameters
        ----------
        model : object
            A fitted, picklable model.
        feature_names : list of str
            Feature column names, in the order the model expects.
        params : dict
            Hyperparameters (JSON-serialisable; tuples come back as lists).
        data_hash : str
            Content hash of the training data (e.g. ``MarketData.sha256()``).
        metrics : dict
            Evaluation results (e.g. ``WalkForwardReport.to_dict()``).
        train_period : (int, int)
            UTC nanoseconds of the first and last training bar.
        extra : dict or None
            Any further JSON-serialisable metadata.
        """
        check_save_args(model, feature_names, data_hash, train_period)
        model_bytes = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            version = _format_version(self._max_number() + 1)
            created_ns = self._clock.now_ns()
            info = build_info(
                version, created_ns, model, feature_names, params, data_hash, metrics,
                train_period, extra,
            )  # fmt: skip
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=self.root))
            try:
                tmp.chmod(0o755)  # mkdtemp makes it owner-only; readers may run as others
                write_version_files(tmp, {MODEL_FILE: model_bytes, INFO_FILE: info})
                tmp.rename(self.root / version)
                fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return version

    def load(self, version: str | None = None) -> LoadedModel:
        """Verify and unpickle a version (None: the production version, else the latest).

        Raises
        ------
        ModelIntegrityError
            If any hash, the manifest or the file set does not match; nothing is unpickled.
        ModelNotFoundError
            If the version does not exist or the registry is empty.
        """
        resolved = self._resolve(version)
        files = read_verified(self._dir(resolved))
        info = info_from_json(resolved, files[INFO_FILE])
        model = pickle.loads(files[MODEL_FILE])  # verified bytes only
        return LoadedModel(model=model, info=info)

    def verify(self, version: str) -> ModelInfo:
        """Check every file of ``version`` against its manifest without unpickling; return info."""
        files = read_verified(self._dir(version))
        return info_from_json(version, files[INFO_FILE])

    def show(self, version: str) -> ModelInfo:
        """Return the metadata of ``version`` (manifest and ``info.json`` verified)."""
        files = read_verified(self._dir(version), only={INFO_FILE})
        return info_from_json(version, files[INFO_FILE])

    def list(self) -> builtins.list[ModelInfo]:
        """Return the metadata of every version, oldest first."""
        return [self.show(v) for v in self._versions()]

    def latest(self) -> str | None:
        """Return the newest version id, or None when the registry is empty."""
        versions = self._versions()
        return versions[-1] if versions else None

    def production(self) -> str | None:
        """Return the promoted (production) version id, or None if none was promoted."""
        stack = self._read_state()["stack"]
        return stack[-1] if stack else None

    def history(self) -> builtins.list[PromotionEvent]:
        """Return every promotion and rollback, oldest first."""
        return [PromotionEvent(**event) for event in self._read_state()["history"]]

    def promote(self, version: str) -> None:
        """Make ``version`` the production version (it is verified first).

        Promoting the version already in production changes nothing.
        """
        self.verify(version)
        with self._locked():
            state = self._read_state()
            previous = state["stack"][-1] if state["stack"] else None
            if previous == version:
                return
            state["stack"].append(version)
            self._record(state, "promote", version, previous)

    def rollback(self) -> str:
        """Return production to the previously promoted version and return its id.

        Raises
        ------
        ModelNotFoundError
            When fewer than two promotions are on record.
        """
        with self._locked():
            state = self._read_state()
            stack = state["stack"]
            if len(stack) < 2:
                raise ModelNotFoundError(
                    f"rollback needs a previously promoted version, but the promotion stack is "
                    f"{stack}; promote another version first (registry {self.root})"
                )
            previous = stack.pop()
            self._record(state, "rollback", stack[-1], previous)
            return str(stack[-1])

    def _record(self, state: dict[str, Any], action: str, version: str, prev: str | None) -> None:
        now = self._clock.now_ns()
        event = {"action": action, "version": version, "previous": prev, "ts_ns": now}
        state["history"].append({**event, "at": iso_ns(now)})
        data = (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()
        replace_file_atomically(self.root / _STATE_FILE, data)

    def _read_state(self) -> dict[str, Any]:
        path = self.root / _STATE_FILE
        if not path.is_file():
            return {"format": 1, "stack": [], "history": []}
        try:
            state = json.loads(path.read_bytes())
        except ValueError as exc:
            raise PersistenceError(
                f"{path}: not valid JSON ({exc}); restore it from a backup"
            ) from exc
        if state.get("format") != 1:
            raise PersistenceError(f"{path}: unsupported format {state.get('format')!r}")
        return dict(state)

    def _resolve(self, version: str | None) -> str:
        if version is not None:
            return version
        resolved = self.production() or self.latest()
        if resolved is None:
            raise ModelNotFoundError(
                f"model registry {self.root} holds no versions; train and save a model first"
            )
        return resolved

    def _dir(self, version: str) -> Path:
        known = self._versions()
        if version not in known:
            raise ModelNotFoundError(
                f"model version {version!r} not found in {self.root}; known versions: "
                f"{known or 'none'}"
            )
        return self.root / version

    def _versions(self) -> builtins.list[str]:
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
        return sorted(names, key=lambda n: int(n[1:]))

    def _max_number(self) -> int:
        versions = self._versions()
        return int(versions[-1][1:]) if versions else 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _format_version(number: int) -> str:
    return f"v{number:04d}"
