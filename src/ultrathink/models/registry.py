"""``ModelRegistry``: versioned, hash-verified model artefacts on disk.

Layout under ``root``::

    registry.json            production version, promotion stack and history (atomic writes)
    v0001/model.pkl          the pickled model
    v0001/info.json          metadata: features, params, data hash, metrics, train period, ...
    v0001/oos.npz            optional further files given to ``save(files=...)``: ``train``
                             stores its out-of-sample predictions, binned (``registry_oos``)
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
    parse_json_file,
    read_regular_file,
    read_verified,
    replace_file_atomically,
    write_version_files,
)
from ultrathink.models.registry_meta import (
    INFO_FILE,
    MODEL_FILE,
    ModelInfo,
    build_info,
    check_files,
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
        files: dict[str, bytes] | None = None,
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
        files : dict of str to bytes, or None
            More files of the version (name: plain, not ``model.pkl``, ``info.json`` or a
            manifest), hashed in its manifest like the others and read back with
            :meth:`read_file`. Data too large or too specific for ``info.json``, which every
            listing reads (``train`` stores its binned out-of-sample predictions here).
        """
        check_save_args(model, feature_names, data_hash, train_period)
        payload = check_files(files)
        model_bytes = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        with self._locked(), self._writing():
            version = _format_version(self._max_number() + 1)
            created_ns = self._clock.now_ns()
            info = build_info(
                version, created_ns, model, feature_names, params, data_hash, metrics,
                train_period, extra,
            )  # fmt: skip
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=self.root))
            try:
                tmp.chmod(0o755)  # mkdtemp makes it owner-only; readers may run as others
                write_version_files(tmp, {**payload, MODEL_FILE: model_bytes, INFO_FILE: info})
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
        directory = self._dir(resolved)
        files = read_verified(directory)
        info = info_from_json(resolved, files[INFO_FILE])
        try:
            model = pickle.loads(files[MODEL_FILE])  # verified bytes only
        except Exception as exc:  # any error of a foreign or broken pickle: one clear error
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise ModelIntegrityError(
                f"{directory / MODEL_FILE}: matches its manifest but cannot be unpickled "
                f"({detail}); it was saved by other library versions ({info.versions}) or "
                "the manifest was rewritten. Save the model again with this installation"
            ) from None
        return LoadedModel(model=model, info=info)

    def verify(self, version: str) -> ModelInfo:
        """Check every file of ``version`` against its manifest without unpickling; return info."""
        files = read_verified(self._dir(version))
        return info_from_json(version, files[INFO_FILE])

    def show(self, version: str) -> ModelInfo:
        """Return the metadata of ``version`` (manifest and ``info.json`` verified)."""
        files = read_verified(self._dir(version), only={INFO_FILE})
        return info_from_json(version, files[INFO_FILE])

    def read_file(self, version: str, name: str) -> bytes | None:
        """The verified bytes of the file ``name`` saved with ``version`` (``save(files=)``),
        or None when the version has no such file (e.g. saved before it was written).

        Raises
        ------
        ModelIntegrityError
            If the manifest, the file set or the file's hash does not match.
        """
        return read_verified(self._dir(version), only={name}).get(name)

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
        if not path.exists() and not path.is_symlink():
            return {"format": 1, "stack": [], "history": []}
        try:
            state = parse_json_file(path, read_regular_file(path, _RESTORE_STATE), _RESTORE_STATE)
        except ModelIntegrityError as exc:  # a broken state file is not a broken model
            raise PersistenceError(str(exc)) from None
        problem = _state_problem(state)
        if problem:
            raise PersistenceError(f"{path}: {problem}; {_RESTORE_STATE}")
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
            if self.root.exists():
                raise PersistenceError(
                    f"model registry {self.root} is not a directory; pass the registry "
                    "directory (e.g. --registry .ultrathink/models)"
                )
            return []
        try:
            names = [p.name for p in self.root.iterdir() if _VERSION_RE.match(p.name)]
            names = [n for n in names if (self.root / n).is_dir()]
        except OSError as exc:
            raise PersistenceError(
                f"model registry {self.root} cannot be listed ({exc.strerror or exc}); "
                "check its permissions"
            ) from None
        return sorted(names, key=lambda n: int(n[1:]))

    def _max_number(self) -> int:
        versions = self._versions()
        return int(versions[-1][1:]) if versions else 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._writing():
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+b")  # noqa: SIM115 - closed below
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        # a full disk, a read-only mount or a file where the registry directory should be
        try:
            yield
        except OSError as exc:
            raise PersistenceError(
                f"model registry {self.root}: cannot write ({exc.strerror or exc}: "
                f"{exc.filename or self.root}); check that it is a writable directory with "
                "free space"
            ) from None


def _format_version(number: int) -> str:
    return f"v{number:04d}"


_RESTORE_STATE = f"restore {_STATE_FILE} from a backup (or delete it to forget every promotion)"
_EVENT_TYPES: dict[str, type | tuple[type, ...]] = {
    "action": str, "version": str, "previous": (str, type(None)), "ts_ns": int, "at": str,
}  # fmt: skip


def _state_problem(state: Any) -> str | None:
    """What is wrong with a parsed ``registry.json``, or None."""
    if not isinstance(state, dict):
        return f"must be a JSON object, was {type(state).__name__}"
    if state.get("format") != 1:
        return f"unsupported format {str(state.get('format'))[:40]!r}, expected 1"
    stack, history = state.get("stack"), state.get("history")
    if not isinstance(stack, list) or not all(
        isinstance(v, str) and _VERSION_RE.match(v) for v in stack
    ):
        return "'stack' must be a list of version ids like 'v0001'"
    if not isinstance(history, list):
        return "'history' must be a list of promotion events"
    for i, event in enumerate(history):
        ok = isinstance(event, dict) and set(event) == set(_EVENT_TYPES)
        if not ok or any(
            not isinstance(event[k], t) or isinstance(event[k], bool)
            for k, t in _EVENT_TYPES.items()
        ):
            return f"history[{i}] must be an object with {', '.join(_EVENT_TYPES)}"
    return None
