"""ModelRegistry: versioned round trips, hash verification before unpickling, promotion."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from ultrathink.core.clock import TestClock
from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.models.ensemble import EnsembleClassifier
from ultrathink.models.registry import (
    LoadedModel,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelRegistry,
)

T0_NS = 1_700_000_000_000_000_000
FEATURES = ["ret_1", "ret_5", "vol_20", "rsi_14"]


class Booby:
    """Unpickling this creates the directory ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture(scope="module")
def model() -> EnsembleClassifier:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(FEATURES)))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(np.int64)
    return EnsembleClassifier(gbm_n_estimators=5, forest_n_estimators=5).fit(X, y)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(T0_NS)


@pytest.fixture
def registry(tmp_path, clock) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", clock=clock)


def save(registry: ModelRegistry, model, **overrides) -> str:
    args = {
        "feature_names": FEATURES,
        "params": model.get_params(),
        "data_hash": "abc123",
        "metrics": {"auc": 0.61, "sharpe": np.float64(1.25)},
        "train_period": (T0_NS - 10**15, T0_NS),
    }
    return registry.save(model, **{**args, **overrides})


def test_round_trip_keeps_model_and_metadata(registry, model, clock):
    X = np.random.default_rng(1).normal(size=(20, len(FEATURES)))

    version = save(registry, model, extra={"note": "first"})
    loaded = registry.load(version)

    assert version == "v0001"
    assert isinstance(loaded, LoadedModel)
    np.testing.assert_array_equal(loaded.model.predict_proba(X), model.predict_proba(X))
    info = loaded.info
    assert info.version == "v0001"
    assert info.feature_names == FEATURES
    assert info.params["weights"] == [1.0, 1.0, 1.0]  # tuples come back as lists
    assert info.params["gbm_n_estimators"] == 5
    assert info.data_hash == "abc123"
    assert info.metrics == {"auc": 0.61, "sharpe": 1.25}
    assert info.train_period == (T0_NS - 10**15, T0_NS)
    assert info.created_ns == T0_NS
    assert info.created == "2023-11-14T22:13:20+00:00"
    assert set(info.versions) == {"python", "numpy", "sklearn", "lightgbm"}
    assert info.model_class == "ultrathink.models.ensemble.EnsembleClassifier"
    assert info.extra == {"note": "first"}
    assert loaded.library_mismatches() == {}


def test_version_layout_and_manifest(registry, model):
    version = save(registry, model)
    directory = registry.root / version

    manifest_bytes = (directory / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)

    assert sorted(p.name for p in directory.iterdir()) == [
        "info.json",
        "manifest.json",
        "manifest.sha256",
        "model.pkl",
    ]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest
    sidecar = (directory / "manifest.sha256").read_text()
    assert sidecar == f"{hashlib.sha256(manifest_bytes).hexdigest()}  manifest.json\n"
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".tmp")]


def test_versions_increment_and_list_show(registry, model, clock):
    first = save(registry, model, data_hash="h1")
    clock.advance_ns(10**9)
    second = save(registry, model, data_hash="h2")

    infos = registry.list()

    assert (first, second) == ("v0001", "v0002")
    assert [i.version for i in infos] == ["v0001", "v0002"]
    assert [i.data_hash for i in infos] == ["h1", "h2"]
    assert registry.show("v0002").created_ns == T0_NS + 10**9
    assert registry.latest() == "v0002"


def test_empty_registry(registry):
    assert registry.list() == []
    assert registry.latest() is None
    assert registry.production() is None
    with pytest.raises(ModelNotFoundError, match="holds no versions"):
        registry.load()


def test_unknown_version_lists_known_ones(registry, model):
    save(registry, model)

    with pytest.raises(ModelNotFoundError, match=r"'v0042' not found.*\['v0001'\]"):
        registry.load("v0042")
    with pytest.raises(ModelNotFoundError, match="known versions"):
        registry.show("../v0001")


def test_load_none_prefers_production_then_latest(registry, model):
    save(registry, model)
    save(registry, model)

    assert registry.load().info.version == "v0002"
    registry.promote("v0001")
    assert registry.load().info.version == "v0001"


def test_promote_and_rollback_history(registry, model, clock):
    for _ in range(3):
        save(registry, model)

    registry.promote("v0001")
    clock.advance_ns(1)
    registry.promote("v0003")
    registry.promote("v0003")  # already in production: no change
    clock.advance_ns(1)
    back = registry.rollback()

    assert back == "v0001"
    assert registry.production() == "v0001"
    history = registry.history()
    assert [(e.action, e.version, e.previous) for e in history] == [
        ("promote", "v0001", None),
        ("promote", "v0003", "v0001"),
        ("rollback", "v0001", "v0003"),
    ]
    assert [e.ts_ns for e in history] == [T0_NS, T0_NS + 1, T0_NS + 2]
    state = json.loads((registry.root / "registry.json").read_text())
    assert state["stack"] == ["v0001"]
    with pytest.raises(ModelNotFoundError, match="rollback needs a previously promoted"):
        registry.rollback()


def test_promotion_survives_a_new_registry_object(registry, model, tmp_path):
    save(registry, model)
    registry.promote("v0001")

    reopened = ModelRegistry(registry.root)

    assert reopened.production() == "v0001"
    assert reopened.history()[0].version == "v0001"


def test_rollback_without_promotions_is_refused(registry, model):
    save(registry, model)

    with pytest.raises(ModelNotFoundError, match=r"promotion stack is \[\]"):
        registry.rollback()


def test_flipped_byte_in_model_is_refused(registry, model):
    version = save(registry, model)
    path = registry.root / version / "model.pkl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(ModelIntegrityError, match=r"model\.pkl: SHA-256 does not match") as info:
        registry.load(version)

    message = str(info.value)
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert "expected" in message and "Restore" in message
    assert isinstance(info.value, PersistenceError)


def test_malicious_pickle_is_never_unpickled(registry, model, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Booby(marker))
    version = save(registry, model)
    (registry.root / version / "model.pkl").write_bytes(payload)

    with pytest.raises(ModelIntegrityError):
        registry.load(version)
    with pytest.raises(ModelIntegrityError):
        registry.promote(version)

    assert not marker.exists()
    pickle.loads(payload)  # the control: loading the payload does leave the marker
    assert marker.exists()


def test_manifest_edited_to_match_a_swapped_pickle_is_refused(registry, model, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Booby(marker))
    version = save(registry, model)
    directory = registry.root / version
    (directory / "model.pkl").write_bytes(payload)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["model.pkl"] = hashlib.sha256(payload).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))

    with pytest.raises(ModelIntegrityError, match=r"manifest\.json: SHA-256 does not match"):
        registry.load(version)

    assert not marker.exists()


@pytest.mark.parametrize("name", ["manifest.sha256", "manifest.json", "info.json", "model.pkl"])
def test_missing_file_is_refused(registry, model, name):
    version = save(registry, model)
    (registry.root / version / name).unlink()

    with pytest.raises(ModelIntegrityError, match="missing"):
        registry.load(version)


def test_extra_file_is_refused(registry, model):
    version = save(registry, model)
    (registry.root / version / "sneaky.pkl").write_bytes(b"x")

    with pytest.raises(ModelIntegrityError, match=r"unexpected \['sneaky.pkl'\]"):
        registry.load(version)


def test_edited_metadata_is_refused_by_show_and_list(registry, model):
    version = save(registry, model)
    path = registry.root / version / "info.json"
    path.write_text(path.read_text().replace("abc123", "forged"))

    with pytest.raises(ModelIntegrityError, match=r"info\.json"):
        registry.show(version)
    with pytest.raises(ModelIntegrityError):
        registry.list()


def test_renamed_version_directory_is_refused(registry, model):
    save(registry, model)
    (registry.root / "v0001").rename(registry.root / "v0007")

    with pytest.raises(ModelIntegrityError, match="was renamed"):
        registry.load("v0007")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"feature_names": ["a", "b"]}, "feature_names has 2 names but the model was fitted on 4"),
        ({"feature_names": "ret_1"}, "feature_names must be a list of str"),
        ({"data_hash": ""}, "data_hash must be a non-empty str"),
        ({"train_period": (5, 1)}, "train_period start must be <= end"),
        ({"train_period": (1.5, 2)}, r"train_period must be \(start_ns, end_ns\) integers"),
        ({"params": {"fn": len}}, r"params\.fn must be JSON-serialisable"),
        ({"metrics": {1: 0.5}}, "metrics keys must be str"),
    ],
)
def test_invalid_save_arguments_leave_nothing_behind(registry, model, overrides, message):
    with pytest.raises(ConfigError, match=message):
        save(registry, model, **overrides)

    assert registry.latest() is None
    leftovers = [p.name for p in registry.root.iterdir()] if registry.root.exists() else []
    assert not [n for n in leftovers if n.startswith(".tmp")]


def test_unpicklable_model_is_rejected_before_writing(registry):
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        registry.save(
            lambda x: x,
            feature_names=[],
            params={},
            data_hash="h",
            metrics={},
            train_period=(0, 1),
        )

    assert registry.latest() is None


# --- broken registry files: one clear PersistenceError line, never a traceback --------------


def resign(directory: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``name`` and re-sign the manifest: the bytes then pass hashing."""
    (directory / name).write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    sign_manifest(directory, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def sign_manifest(directory: Path, manifest: bytes) -> None:
    (directory / "manifest.json").write_bytes(manifest)
    digest = hashlib.sha256(manifest).hexdigest()
    (directory / "manifest.sha256").write_text(f"{digest}  manifest.json\n")


def replace_with_dir(directory: Path, name: str) -> None:
    (directory / name).unlink()
    (directory / name).mkdir()


def replace_with_fifo(directory: Path, name: str) -> None:
    (directory / name).unlink()
    os.mkfifo(directory / name)


def edit_info(**changes) -> object:
    def apply(directory: Path) -> None:
        info = json.loads((directory / "info.json").read_text())
        info.update(changes)
        info = {k: v for k, v in info.items() if v is not ...}
        resign(directory, "info.json", json.dumps(info).encode())

    return apply


MISSING_MODULE_PICKLE = b"cno_such_module\nX\n."  # protocol 0: a global, then STOP

BROKEN_VERSIONS = [
    ("pkl-is-dir", lambda d: replace_with_dir(d, "model.pkl"), "model.pkl: is a directory"),
    ("pkl-is-fifo", lambda d: replace_with_fifo(d, "model.pkl"), "model.pkl: is a special file"),
    ("pkl-garbage", lambda d: resign(d, "model.pkl", b"garbage"), "cannot be unpickled"),
    ("pkl-empty", lambda d: resign(d, "model.pkl", b""), "cannot be unpickled (EOFError"),
    ("pkl-foreign", lambda d: resign(d, "model.pkl", MISSING_MODULE_PICKLE), "ModuleNotFound"),
    ("info-is-dir", lambda d: replace_with_dir(d, "info.json"), "info.json: is a directory"),
    ("info-garbage", lambda d: resign(d, "info.json", b"\xffnot json"), "not valid UTF-8 JSON"),
    ("info-deep", lambda d: resign(d, "info.json", b"[" * 100_000), "not valid UTF-8 JSON"),
    ("info-list", lambda d: resign(d, "info.json", b"[]"), "must be a JSON object, was list"),
    ("info-no-field", edit_info(data_hash=...), "has no 'data_hash' field"),
    ("info-ns-str", edit_info(created_ns="x"), "'created_ns' must be an integer, was 'x'"),
    ("info-ns-bool", edit_info(created_ns=True), "'created_ns' must be an integer, was True"),
    ("info-period", edit_info(train_period=[1]), "'train_period' must be a list of two"),
    ("info-names", edit_info(feature_names="ret_1"), "'feature_names' must be a list of str"),
    ("info-versions", edit_info(versions={"numpy": 2}), "'versions' must be an object of str"),
    ("info-version", edit_info(version=7), "'version' must be a string, was 7"),
    ("manifest-is-dir", lambda d: replace_with_dir(d, "manifest.json"), "is a directory"),
    ("sidecar-is-dir", lambda d: replace_with_dir(d, "manifest.sha256"), "is a directory"),
    ("sidecar-is-fifo", lambda d: replace_with_fifo(d, "manifest.sha256"), "a special file"),
    ("manifest-garbage", lambda d: sign_manifest(d, b"\xff{"), "not valid UTF-8 JSON"),
    ("manifest-list", lambda d: sign_manifest(d, b"[1]"), "must be a JSON object, was list"),
    ("manifest-format", lambda d: sign_manifest(d, b'{"format": 2}'), "unsupported manifest"),
    ("manifest-no-files", lambda d: sign_manifest(d, b'{"format": 1}'), "'files' must be"),
    ("manifest-files-list",
     lambda d: sign_manifest(d, b'{"format": 1, "files": ["model.pkl"]}'), "'files' must be"),
    ("manifest-digest",
     lambda d: sign_manifest(d, b'{"format": 1, "files": {"model.pkl": 5}}'), "hex SHA-256"),
    ("manifest-escape",
     lambda d: sign_manifest(d, b'{"format": 1, "files": {"../x": "' + b"0" * 64 + b'"}}'),
     "entry '../x'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("breaks", "fragment"), [b[1:] for b in BROKEN_VERSIONS], ids=[b[0] for b in BROKEN_VERSIONS]
)
def test_a_broken_version_is_one_integrity_error(registry, model, breaks, fragment):
    version = save(registry, model)
    breaks(registry.root / version)

    with pytest.raises(ModelIntegrityError) as info:
        registry.load(version)

    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert (
        "nothing was loaded" in message
        or "Save the model again" in message
        or ("another version" in message)
    )


@pytest.mark.parametrize(
    ("name", "fragment"), [(b[0], b[2]) for b in BROKEN_VERSIONS if b[0].startswith("info")]
)
def test_show_and_list_refuse_broken_metadata_too(registry, model, name, fragment):
    version = save(registry, model)
    {b[0]: b[1] for b in BROKEN_VERSIONS}[name](registry.root / version)

    with pytest.raises(ModelIntegrityError, match=re.escape(fragment)):
        registry.show(version)
    with pytest.raises(ModelIntegrityError, match=re.escape(fragment)):
        registry.list()


def test_an_unreadable_model_file_is_a_persistence_error(registry, model):
    version = save(registry, model)
    path = registry.root / version / "model.pkl"
    path.chmod(0o000)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads any file whatever its mode (root / CAP_DAC_OVERRIDE)")
        with pytest.raises(PersistenceError, match="cannot be read"):
            registry.load(version)
    finally:
        path.chmod(0o644)


BROKEN_STATES = [
    ("garbage", b"not json", "not valid UTF-8 JSON"),
    ("binary", b"\xff\xfe\x00", "not valid UTF-8 JSON"),
    ("deep", b"[" * 100_000, "not valid UTF-8 JSON (nested too deeply)"),
    ("list", b"[]", "must be a JSON object, was list"),
    ("format", b'{"format": 2, "stack": [], "history": []}', "unsupported format '2'"),
    ("no-stack", b'{"format": 1, "history": []}', "'stack' must be a list of version ids"),
    ("stack-ints", b'{"format": 1, "stack": [1], "history": []}', "'stack' must be a list"),
    ("history-dict", b'{"format": 1, "stack": [], "history": {}}', "'history' must be a list"),
    ("event-partial", b'{"format": 1, "stack": [], "history": [{"action": "promote"}]}',
     "history[0] must be an object with action, version, previous, ts_ns, at"),
    ("event-types", b'{"format": 1, "stack": [], "history": [{"action": "promote", '
     b'"version": "v0001", "previous": null, "ts_ns": true, "at": ""}]}', "history[0]"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "fragment"), [b[1:] for b in BROKEN_STATES], ids=[b[0] for b in BROKEN_STATES]
)
@pytest.mark.parametrize("operation", ["production", "history", "load", "promote", "rollback"])
def test_a_broken_registry_json_is_one_persistence_error(
    registry, model, content, fragment, operation
):
    version = save(registry, model)
    (registry.root / "registry.json").write_bytes(content)
    call = {"promote": lambda: registry.promote(version)}.get(
        operation, getattr(registry, operation)
    )

    with pytest.raises(PersistenceError) as info:
        call()

    message = str(info.value)
    assert not isinstance(info.value, ModelIntegrityError)  # the models are fine
    assert fragment in message and "registry.json" in message and "\n" not in message
    assert "restore registry.json from a backup" in message


def test_a_registry_json_directory_is_not_an_empty_history(registry, model):
    # it used to read as "nothing promoted", so load() silently fell back to the latest
    save(registry, model)
    (registry.root / "registry.json").mkdir()

    with pytest.raises(PersistenceError, match=r"registry\.json: is a directory"):
        registry.load()


def test_a_registry_root_that_is_a_file_is_refused(tmp_path, model):
    root = tmp_path / "models"
    root.write_text("not a directory")
    registry = ModelRegistry(root)

    with pytest.raises(PersistenceError, match="is not a directory"):
        registry.list()
    with pytest.raises(PersistenceError, match="cannot write"):
        save(registry, model)


def test_a_lock_file_that_is_a_directory_is_refused(registry, model):
    version = save(registry, model)
    (registry.root / ".lock").unlink()
    (registry.root / ".lock").mkdir()

    with pytest.raises(PersistenceError, match=r"cannot write \(Is a directory"):
        registry.promote(version)


# -- further files (save(files=...), read_file) ---------------------------------------------------


def test_further_files_are_hashed_and_read_back(registry, model):
    version = save(registry, model, files={"oos.npz": b"\x00binned\xff"})
    old = save(registry, model)
    directory = registry.root / version

    manifest = json.loads((directory / "manifest.json").read_text())

    assert registry.read_file(version, "oos.npz") == b"\x00binned\xff"
    assert registry.read_file(old, "oos.npz") is None, "a version saved without it: None"
    assert set(manifest["files"]) == {"info.json", "model.pkl", "oos.npz"}
    assert isinstance(registry.load(version).model, EnsembleClassifier)
    (directory / "oos.npz").write_bytes(b"\x00edited\xff")
    with pytest.raises(ModelIntegrityError, match=r"oos\.npz: SHA-256 does not match"):
        registry.read_file(version, "oos.npz")
    with pytest.raises(ModelIntegrityError, match=r"oos\.npz"):
        registry.load(version)
    with pytest.raises(ModelNotFoundError, match="v0009"):
        registry.read_file("v0009", "oos.npz")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"model.pkl": b"x"}, "must be a plain name"),
        ({"manifest.json": b"x"}, "must be a plain name"),
        ({"../escape": b"x"}, "must be a plain name"),
        ({".hidden": b"x"}, "must be a plain name"),
        ({"oos.npz": "text"}, "file 'oos.npz' must be bytes, was str"),
        ([("oos.npz", b"x")], "files must be a dict"),
    ],
)
def test_bad_further_files_leave_nothing_behind(registry, model, files, message):
    with pytest.raises(ConfigError, match=message):
        save(registry, model, files=files)

    assert registry.latest() is None
