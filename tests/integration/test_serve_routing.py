"""``ultrathink serve`` routing over real HTTP: the weighted A/B split, sticky keys (also
across a restart), a shadow that never answers, a canary rolled back on a breach, and
promotion from feedback (refused without enough, forced, from the API and the CLI).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.serve_fixtures import (
    HttpClient,
    ServeProcess,
    feature_rows,
    primary_features,
    run_cli,
    serving_events,
    trained_registry,
    wait_until,
)

from ultrathink.models.registry import ModelRegistry
from ultrathink.serving.routing import Routing

AB = "v0001=70,v0002=30"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_registry(tmp_path_factory)


@pytest.fixture(scope="module")
def ab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ab") / "home"


@pytest.fixture(scope="module")
def ab_server(ab_home: Path, registry: Path) -> Iterator[ServeProcess]:
    with ServeProcess(ab_home, "--registry", str(registry), "--ab", AB) as proc:
        yield proc


@pytest.fixture(scope="module")
def names(ab_server: ServeProcess) -> list[str]:
    return primary_features(ab_server)


def _registry_copy(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # promotion writes the registry: a private copy keeps the module's registry untouched
    copy = tmp_path_factory.mktemp("registry-copy") / "models"
    shutil.copytree(registry, copy)
    return copy


def _versions_by_key(port: int, keys: list[str], row: dict[str, float]) -> dict[str, str]:
    with HttpClient(port) as c:
        answers = {key: c.post("/v1/predict", {"features": row, "key": key}) for key in keys}
    assert all(a.status == 200 for a in answers.values())
    return {key: a.body["version"] for key, a in answers.items()}


# --- A/B --------------------------------------------------------------------------------------
def test_ab_split_is_within_4_sigma_of_the_weights(
    ab_server: ServeProcess, names: list[str]
) -> None:
    n = 2000
    keys = [f"symbol-{i:05d}" for i in range(n)]
    chosen = _versions_by_key(ab_server.port, keys, dict.fromkeys(names, 0.1))
    share = sum(v == "v0002" for v in chosen.values()) / n
    sigma = math.sqrt(0.3 * 0.7 / n)
    assert abs(share - 0.30) <= 4 * sigma, share
    assert set(chosen.values()) == {"v0001", "v0002"}
    # the server routes exactly as the documented BLAKE2b rule, computed here in-process
    models = ab_server.call("GET", "/v1/models")[1]
    routing = Routing.from_dict(models["routing"])
    assert all(routing.choose(key, 0) == version for key, version in chosen.items())
    # its figures count every request
    stats = {m["version"]: m["stats"] for m in models["models"]}
    assert {m["version"]: m["traffic_pct"] for m in models["models"]} == {
        "v0001": 70.0, "v0002": 30.0
    }  # fmt: skip
    assert stats["v0002"]["requests"] >= sum(v == "v0002" for v in chosen.values())


def test_same_key_same_version_also_after_a_restart(
    ab_server: ServeProcess, ab_home: Path, registry: Path, names: list[str]
) -> None:
    keys = [f"K{i}" for i in range(60)]
    rows = feature_rows(names, 3, seed=11)
    runs = [_versions_by_key(ab_server.port, keys, row) for row in rows]
    assert runs[0] == runs[1] == runs[2]
    assert set(runs[0].values()) == {"v0001", "v0002"}
    # a keyless request is routed by its sequence number: both versions answer over time
    with HttpClient(ab_server.port) as c:
        keyless = {c.post("/v1/predict", {"features": rows[0]}).body["version"] for _ in range(60)}
    assert keyless == {"v0001", "v0002"}
    with ServeProcess(ab_home, "--registry", str(registry), "--ab", AB) as restarted:
        after = _versions_by_key(restarted.port, keys, rows[0])
        assert restarted.stop() == 0
    assert after == runs[0]


# --- shadow -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shadow_server(
    tmp_path_factory: pytest.TempPathFactory, registry: Path
) -> Iterator[ServeProcess]:
    home = tmp_path_factory.mktemp("shadow") / "home"
    args = ("--registry", str(registry), "--model", "v0001", "--shadow", "v0002")
    with ServeProcess(home, *args) as proc:
        yield proc


def _by_version(c: HttpClient) -> dict[str, dict]:
    return {m["version"]: m for m in c.get("/v1/models").body["models"]}


def test_shadow_never_answers_and_is_measured(
    shadow_server: ServeProcess, names: list[str]
) -> None:
    n = 120
    with HttpClient(shadow_server.port) as c:
        before = _by_version(c)
        mirrored = before["v0002"]["stats"]["shadow"]["requests"]
        served = before["v0001"]["stats"]["requests"]
        rows = feature_rows(names, n, seed=5)
        answers = [c.post("/v1/predict", {"features": row}) for row in rows]
        answers += [c.post("/v1/predict/batch", {"rows": rows[:10]})]
        assert all(a.status == 200 for a in answers)
        assert {a.body["version"] for a in answers} == {"v0001"}

        def shadow_done() -> dict | None:
            found = _by_version(c)
            done = found["v0002"]["stats"]["shadow"]["requests"] >= mirrored + n
            return found if done else None

        found = wait_until(shadow_done, "the shadow scored every single prediction")
        assert found["v0002"]["role"] == "shadow"
        assert found["v0002"]["traffic_pct"] == 0.0
        assert found["v0002"]["stats"]["requests"] == 0  # it answered nothing
        shadow = found["v0002"]["stats"]["shadow"]
        assert shadow["requests"] == mirrored + n  # single predictions only, not the batch
        assert shadow["errors"] == 0
        assert 0.0 <= shadow["disagreement_rate"] <= 1.0
        assert shadow["disagreements"] == round(shadow["disagreement_rate"] * shadow["requests"])
        assert shadow["mean_abs_diff"] > 0.0  # two different models
        assert found["v0001"]["stats"]["requests"] == served + n + 1

    code, out, err = run_cli("serve", "ab", "status", "--json", "--url", shadow_server.url)
    assert code == 0, err
    report = json.loads(out)
    variants = {v["version"]: v for v in report["variants"]}
    assert variants["v0002"]["role"] == "shadow"
    assert variants["v0002"]["traffic_pct"] == 0.0
    assert variants["v0002"]["stats"]["shadow"]["requests"] >= n
    assert "disagreement_rate" in variants["v0002"]["stats"]["shadow"]
    assert report["tests"] == []  # a shadow is not a candidate

    code, out, err = run_cli("serve", "ab", "status", "--url", shadow_server.url)
    assert code == 0, err
    assert "shadow v0002:" in out and "mirrored, disagreement" in out
    assert "variants (primary v0001)" in out


def test_metrics_label_every_per_version_series(
    shadow_server: ServeProcess, names: list[str]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with HttpClient(shadow_server.port) as c:
        for row in feature_rows(names, 5, seed=8):
            assert c.post("/v1/predict", {"features": row}).status == 200
        wait_until(
            lambda: _by_version(c)["v0002"]["stats"]["shadow"]["requests"] >= 5, "shadow calls"
        )
        text = c.get("/metrics").body
    seen: set[tuple[str, tuple]] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)
    assert ("ultrathink_serve_prediction_mean", (("version", "v0001"),)) in seen
    assert ("ultrathink_serve_shadow_disagreement_rate", (("version", "v0002"),)) in seen


# --- canary -----------------------------------------------------------------------------------
def test_canary_over_its_p99_limit_is_rolled_back(
    tmp_path_factory: pytest.TempPathFactory, registry: Path, names: list[str]
) -> None:
    home = tmp_path_factory.mktemp("canary") / "home"
    args = ("--registry", str(registry), "--model", "v0001", "--canary", "v0002:20",
            "--canary-max-p99-ms", "0.001")  # fmt: skip
    with ServeProcess(home, *args) as proc, HttpClient(proc.port) as c:
        routing = c.get("/v1/models").body["routing"]
        assert routing["canary"]["version"] == "v0002"
        assert routing["canary"]["min_requests"] == 50
        canary_answers, sent = 0, 0
        rows = feature_rows(names, 3000, seed=9)
        # the judge looks twice a second and only after min_requests canary answers
        while canary_answers < 60 and sent < len(rows):
            reply = c.post("/v1/predict", {"features": rows[sent], "key": f"k{sent}"})
            assert reply.status == 200
            canary_answers += reply.body["version"] == "v0002"
            sent += 1
        assert canary_answers >= 50

        def rolled_back() -> dict | None:
            models = c.get("/v1/models").body
            return models if models["routing"]["canary"] is None else None

        models = wait_until(rolled_back, "the canary rolled back", timeout_s=60)
        assert models["routing"]["weights"] == {"v0001": 100}
        assert [m["version"] for m in models["models"]] == ["v0001"]
        events = serving_events(home, "canary_rollback")
        assert len(events) == 1, events
        detail = events[0]["detail"]
        assert events[0]["who"] == "canary-judge"
        assert detail["version"] == "v0002"
        assert "latency p99" in detail["reason"] and "0.001 ms" in detail["reason"]
        ab_events = c.get("/v1/ab").body["events"]
        assert any(e["kind"] == "canary_rollback" for e in ab_events)
        after = [
            c.post("/v1/predict", {"features": row, "key": f"after{i}"})
            for i, row in enumerate(rows[:300])
        ]  # fmt: skip
        assert {a.body["version"] for a in after} == {"v0001"}
        assert proc.stop() == 0


# --- promotion --------------------------------------------------------------------------------
def test_promote_needs_feedback_unless_forced(
    tmp_path_factory: pytest.TempPathFactory, registry: Path, names: list[str]
) -> None:
    reg = _registry_copy(registry, tmp_path_factory)
    home = tmp_path_factory.mktemp("promote") / "home"
    with ServeProcess(home, "--registry", str(reg), "--ab", "v0001=50,v0002=50") as proc:
        key_file = str(proc.home / "serving" / f"run-{proc.port}" / "api-key")
        client = HttpClient(proc.port, api_key=proc.api_key)
        with client as c:
            # a little feedback for both: far below the test's min_n
            for i, row in enumerate(feature_rows(names, 20, seed=3)):
                answer = c.post("/v1/predict", {"features": row, "key": f"p{i}"}).body
                assert c.post("/v1/feedback", {"id": answer["id"], "outcome": i % 2}).status == 200
            refused = c.post("/v1/admin/promote", {"version": "v0002"}, admin=True)
            assert refused.status == 409, refused
            assert refused.body["error"].startswith("promote refused: not enough feedback")
            test = refused.body["test"]
            assert test["significant"] is False and test["min_n"] == 100
            assert test["n_a"] + test["n_b"] == 20
            assert "not enough feedback" in test["verdict"]
            assert ModelRegistry(reg).production() is None

            code, out, err = run_cli(
                "serve", "promote", "v0002", "--url", proc.url, "--api-key-file", key_file
            )
            assert code == 2 and "promote refused" in err, (code, out, err)
            assert ModelRegistry(reg).production() is None

            forced = c.post("/v1/admin/promote", {"version": "v0002", "force": True}, admin=True)
            assert forced.status == 200, forced
            assert forced.body["routing"]["weights"] == {"v0002": 100}
            assert ModelRegistry(reg).production() == "v0002"
            code, out, err = run_cli("models", "list", "--json", "--registry", str(reg))
            assert code == 0, err
            assert [m["version"] for m in json.loads(out) if m["production"]] == ["v0002"]
            assert (
                c.post("/v1/predict", {"features": dict.fromkeys(names, 0.3)}).body["version"]
                == "v0002"
            )

            # from the CLI: route to both again, promote v0001 by force, then roll back
            code, out, err = run_cli("serve", "routing", "--ab", "v0001=50,v0002=50",
                                     "--url", proc.url, "--api-key-file", key_file)  # fmt: skip
            assert code == 0, err
            assert "routing: generation" in out and "v0001 50 %" in out
            code, out, err = run_cli("serve", "promote", "v0001", "--force",
                                     "--url", proc.url, "--api-key-file", key_file)  # fmt: skip
            assert code == 0, err
            assert out.startswith("promote: generation") and "v0001 100 %" in out
            assert ModelRegistry(reg).production() == "v0001"
            code, out, err = run_cli(
                "serve", "rollback", "--url", proc.url, "--api-key-file", key_file, "--json"
            )
            assert code == 0, err
            assert json.loads(out)["routing"]["weights"] == {"v0002": 100}
            assert ModelRegistry(reg).production() == "v0002"

            code, out, err = run_cli("serve", "ab", "status", "--url", proc.url)
            assert code == 0, err
            assert "variants (primary v0002)" in out
            assert "v0002" in out and "primary" in out
        kinds = [e["kind"] for e in serving_events(home)]
        assert kinds == ["promote", "routing", "promote", "rollback"], kinds
        promotes = serving_events(home, "promote")
        assert [e["detail"]["force"] for e in promotes] == [True, True]
        assert promotes[0]["detail"]["test"]["significant"] is False
        assert proc.stop() == 0


def test_ab_status_table_of_a_running_ab_test(ab_server: ServeProcess) -> None:
    code, out, err = run_cli("serve", "ab", "status", "--url", ab_server.url)
    assert code == 0, err
    assert "variants (primary v0001)" in out
    assert "v0002 vs v0001: Welch t-test" in out
    assert "not enough feedback" in out
    code, out, err = run_cli("serve", "ab", "status", "--url", ab_server.url, "--json")
    report = json.loads(out)
    assert [v["version"] for v in report["variants"]] == ["v0001", "v0002"]
    assert [v["role"] for v in report["variants"]] == ["primary", "candidate"]
    assert report["tests"][0]["candidate"] == "v0002"
