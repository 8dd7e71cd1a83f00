"""``ultrathink serve`` over real HTTP: predict, batch, cache, validation, limits, auth,
feedback, health, metrics, OpenAPI, the CLI's refusals, readiness and a graceful stop.

One server per module (``--model v0001 --max-batch 8``) answers the tests that do not change
its state; the rate limit, readiness and SIGTERM tests start their own.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import CliRunner
from tests.integration.serve_fixtures import (
    HttpClient,
    ServeProcess,
    feature_rows,
    primary_features,
    trained_registry,
    wait_until,
)

MAX_BATCH = 8
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_registry(tmp_path_factory)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, registry: Path) -> Iterator[ServeProcess]:
    home = tmp_path_factory.mktemp("api") / "home"
    with ServeProcess(
        home, "--registry", str(registry), "--model", "v0001", "--max-batch", str(MAX_BATCH)
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def names(server: ServeProcess) -> list[str]:
    return primary_features(server)


@pytest.fixture
def client(server: ServeProcess) -> Iterator[HttpClient]:
    with HttpClient(server.port, api_key=server.api_key) as c:
        yield c


def _rows(names: list[str], n: int, request: pytest.FixtureRequest) -> list[dict[str, float]]:
    # a seed per test: no test sees another's cached vectors
    return feature_rows(names, n, seed=zlib.crc32(request.node.name.encode()))


def _check_error(body: Any, status: int) -> None:
    assert isinstance(body, dict), body
    assert body["status"] == status
    assert isinstance(body["error"], str) and body["error"]


# --- predict ----------------------------------------------------------------------------------
def test_predict_by_name_answers_every_field(
    client: HttpClient, names: list[str], request: pytest.FixtureRequest
) -> None:
    row = _rows(names, 1, request)[0]
    reply = client.post("/v1/predict", {"features": row, "key": "AAPL"})
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/json"
    body = reply.body
    assert set(body) == {"id", "version", "probability", "cached", "decision"}
    assert isinstance(body["id"], str) and body["id"]
    assert body["version"] == "v0001"
    assert isinstance(body["probability"], float)
    assert 0.0 <= body["probability"] <= 1.0
    assert body["cached"] is False
    decision = body["decision"]
    assert set(decision) == {"entry_threshold", "exit_threshold", "out_of_range"}
    assert 0.0 < decision["exit_threshold"] <= decision["entry_threshold"] < 1.0
    assert isinstance(decision["out_of_range"], list)
    assert set(decision["out_of_range"]) <= set(names)


def test_out_of_range_names_the_features_outside_the_training_range(
    client: HttpClient, names: list[str]
) -> None:
    huge = dict.fromkeys(names, 1000000.0)
    reply = client.post("/v1/predict", {"features": huge})
    assert reply.status == 200, reply
    assert set(reply.body["decision"]["out_of_range"]) == set(names)


def test_predict_by_list_in_models_order_equals_by_name(
    client: HttpClient, names: list[str], request: pytest.FixtureRequest
) -> None:
    first, second = _rows(names, 2, request)
    by_name = client.post("/v1/predict", {"features": first})
    # the list follows GET /v1/models' feature order; a fresh row so neither answer is cached
    as_list = [second[name] for name in names]
    by_list = client.post("/v1/predict", {"features": as_list})
    assert by_name.status == by_list.status == 200
    assert by_list.body["cached"] is False
    # the same vector by name (keys in another order, plus a name the model ignores) is the
    # cached answer of the list request: one vector, one probability
    shuffled = {"not_a_feature": 1.0, **dict(reversed(list(second.items())))}
    again = client.post("/v1/predict", {"features": shuffled})
    assert again.status == 200
    assert again.body["cached"] is True
    assert again.body["probability"] == by_list.body["probability"]
    assert by_name.body["probability"] != by_list.body["probability"]


def test_identical_request_is_cached_with_the_same_answer(
    client: HttpClient, names: list[str], request: pytest.FixtureRequest
) -> None:
    row = _rows(names, 1, request)[0]
    first = client.post("/v1/predict", {"features": row})
    second = client.post("/v1/predict", {"features": row})
    assert first.status == second.status == 200
    assert first.body["cached"] is False
    assert second.body["cached"] is True
    assert second.body["probability"] == first.body["probability"]
    assert second.body["decision"] == first.body["decision"]
    assert second.body["version"] == first.body["version"]
    assert second.body["id"] != first.body["id"]  # every answer has its own id


def test_batch_equals_the_single_predictions(
    client: HttpClient, names: list[str], request: pytest.FixtureRequest
) -> None:
    rows = _rows(names, MAX_BATCH, request)
    rows[3] = [rows[3][name] for name in names]  # rows may be lists too
    batch = client.post("/v1/predict/batch", {"rows": rows})
    assert batch.status == 200, batch
    body = batch.body
    assert body["version"] == "v0001"
    assert len(body["probabilities"]) == len(body["ids"]) == MAX_BATCH
    assert len(set(body["ids"])) == MAX_BATCH
    singles = [client.post("/v1/predict", {"features": row}) for row in rows]
    assert all(s.status == 200 and s.body["cached"] is False for s in singles)
    assert body["probabilities"] == [s.body["probability"] for s in singles]
    assert body["entry_threshold"] == singles[0].body["decision"]["entry_threshold"]
    assert body["exit_threshold"] == singles[0].body["decision"]["exit_threshold"]


def test_batch_over_max_batch_is_422(
    client: HttpClient, names: list[str], request: pytest.FixtureRequest
) -> None:
    rows = _rows(names, MAX_BATCH + 1, request)
    reply = client.post("/v1/predict/batch", {"rows": rows})
    assert reply.status == 422, reply
    _check_error(reply.body, 422)
    assert reply.body["field"] == "rows"
    assert str(MAX_BATCH) in reply.body["rule"]
    assert reply.body["value"] == MAX_BATCH + 1
    empty = client.post("/v1/predict/batch", {"rows": []})
    assert empty.status == 422 and empty.body["field"] == "rows"


# --- validation -------------------------------------------------------------------------------
def _cases(names: list[str]) -> dict[str, tuple[Any, str, str, Any]]:
    """name -> (body, field, a word of the rule, value)."""
    row: dict[str, Any] = dict.fromkeys(names, 0.25)
    missing = {k: v for k, v in row.items() if k != names[0]}
    return {
        "missing feature": ({"features": missing}, f"features.{names[0]}", "required", None),
        "not a number": (
            {"features": {**row, names[1]: "1.5"}}, f"features.{names[1]}", "number", "1.5"
        ),
        "bool is not a number": (
            {"features": {**row, names[2]: True}}, f"features.{names[2]}", "number", True
        ),
        "list item not a number": (
            {"features": [*[0.1] * (len(names) - 1), None]},
            f"features.{len(names) - 1}", "number", None,
        ),
        "wrong list length": ({"features": [0.1, 0.2]}, "features", str(len(names)), 2),
        "features of another type": ({"features": "x"}, "features", "object", "x"),
        "no features": ({"key": "AAPL"}, "features", "required", None),
        "unknown top-level field": ({"features": row, "symbol": "X"}, "symbol", "not a field",
                                    "X"),
        "key not a string": ({"features": row, "key": 7}, "key", "string", 7),
        "body not an object": ([1, 2], "body", "object", "[1,2]"),
    }  # fmt: skip


CASES = list(_cases([f"f{i}" for i in range(3)]))


@pytest.mark.parametrize("case", CASES)
def test_validation_422_names_field_rule_and_value(
    client: HttpClient, names: list[str], case: str
) -> None:
    body, field, rule_word, value = _cases(names)[case]
    reply = client.post("/v1/predict", body)
    assert reply.status == 422, reply
    _check_error(reply.body, 422)
    got = reply.body
    assert got["field"] == field
    assert rule_word in got["rule"]
    assert got["value"] == value
    assert got["error"] == f"{field}: {got['rule']}"


def test_non_finite_number_is_refused(client: HttpClient, names: list[str]) -> None:
    row = ", ".join(f'"{n}": {"1e999" if i == 0 else "0.5"}' for i, n in enumerate(names))
    reply = client.post("/v1/predict", raw=f'{{"features": {{{row}}}}}'.encode())
    # orjson refuses a number that overflows to infinity: not JSON the server accepts
    assert reply.status == 400, reply
    assert reply.body["field"] == "body"


@pytest.mark.parametrize(
    "raw", [b"{", b"", b"\xff\xfe", b'{"features": [1, 2,]}', b"NaN"], ids=repr
)
def test_malformed_json_is_400(client: HttpClient, raw: bytes) -> None:
    reply = client.post("/v1/predict", raw=raw)
    assert reply.status == 400, reply
    _check_error(reply.body, 400)
    assert reply.body["field"] == "body"
    assert "JSON" in reply.body["rule"]
    # the connection stays usable after a refused body
    assert client.get("/livez").status == 200


# --- body limit -------------------------------------------------------------------------------
def _read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def test_body_over_the_limit_is_413_before_the_body_is_read(server: ServeProcess) -> None:
    # a declared 3 MiB body over the 2 MiB default: the answer comes after the headers alone
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % (3 * MIB)
        )
        status, headers, body = _read_http_response(sock)
    assert status == 413
    assert headers["connection"] == "close"
    answer = json.loads(body)
    _check_error(answer, 413)
    assert str(2 * MIB) in answer["error"]


def test_chunked_body_over_the_limit_is_413(server: ServeProcess) -> None:
    # no content-length: the limit is counted while the chunks arrive
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (MIB, b"x" * MIB)
        status = 0
        try:
            for _ in range(3):  # 3 MiB; the server answers once it has seen > 2 MiB
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may close before the last chunk; its answer is already sent
        status, _, body = _read_http_response(sock)
    assert status == 413
    _check_error(json.loads(body), 413)


def test_body_over_the_limit_sent_whole_by_urllib_gets_413(server: ServeProcess) -> None:
    statuses: list[Any] = []
    for _ in range(20):
        request = urllib.request.Request(
            server.url + "/v1/predict", data=b"x" * (3 * MIB), method="POST",
            headers={"content-type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            statuses.append(type(getattr(exc, "reason", exc)).__name__)
    assert statuses == [413] * 20


# --- routes, methods, auth --------------------------------------------------------------------
def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(client: HttpClient) -> None:
    missing = client.get("/v2/predict")
    assert missing.status == 404
    _check_error(missing.body, 404)
    assert "/v2/predict" in missing.body["error"]
    for method, path, allow in (
        ("GET", "/v1/predict", "POST"),
        ("DELETE", "/v1/predict/batch", "POST"),
        ("POST", "/v1/models", "GET"),
        ("PUT", "/readyz", "GET"),
        ("GET", "/v1/admin/reload", "POST"),
    ):
        reply = client.request(method, path, raw=b"{}" if method != "GET" else None)
        assert reply.status == 405, (method, path, reply)
        assert reply.headers["allow"] == allow
        _check_error(reply.body, 405)
        assert method in reply.body["error"]


def test_admin_routes_need_the_api_key(server: ServeProcess) -> None:
    with HttpClient(server.port) as anonymous:
        missing = anonymous.post("/v1/admin/reload", {})
        wrong = anonymous.post(
            "/v1/admin/reload", {}, headers={"authorization": "Bearer " + "x" * 43}
        )
        other_scheme = anonymous.post(
            "/v1/admin/reload", {}, headers={"authorization": f"Basic {server.api_key}"}
        )
        by_header = anonymous.post("/v1/admin/reload", {}, headers={"x-api-key": server.api_key})
    for reply in (missing, wrong, other_scheme):
        assert reply.status == 401, reply
        assert reply.headers["www-authenticate"] == "Bearer"
        _check_error(reply.body, 401)
    assert by_header.status == 200, by_header
    with HttpClient(server.port, api_key=server.api_key) as admin:
        ok = admin.post("/v1/admin/reload", {}, admin=True)
    assert ok.status == 200, ok
    assert ok.body["loaded"] == ["v0001"]
    assert ok.body["workers_applied"] == 1
    assert ok.body["routing"]["weights"] == {"v0001": 100}


def test_rate_limit_answers_429_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory, registry: Path
) -> None:
    home = tmp_path_factory.mktemp("rate") / "home"
    with ServeProcess(home, "--registry", str(registry), "--rate-limit", "5") as proc:
        with HttpClient(proc.port) as c:
            replies = [c.get("/v1/models") for _ in range(40)]
            # health routes are not rate limited
            assert c.get("/livez").status == 200
            assert c.get("/readyz").status == 200
        assert proc.stop() == 0
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 429}
    assert statuses[0] == 200  # burst max(1, 5 // 10) = 1: the first passes
    limited = [r for r in replies if r.status == 429]
    assert limited, statuses
    for reply in limited:
        assert int(reply.headers["retry-after"]) >= 1
        _check_error(reply.body, 429)
        assert "rate limit" in reply.body["error"]


# --- feedback ---------------------------------------------------------------------------------
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _forge(pid: str) -> str:
    # change a character inside the 8-byte MAC (not the last one, which has padding bits)
    i = len(pid) - 4
    return pid[:i] + _B64[(_B64.index(pid[i]) + 32) % 64] + pid[i + 1 :]


def _respell(pid: str) -> list[str]:
    """Other spellings of the same id bytes: the last character's unused low bits set
    differently, and a character outside the alphabet inserted (the decoder drops it)."""
    raw = base64.urlsafe_b64decode(pid + "=" * (-len(pid) % 4))
    spare_bits = len(pid) * 6 - len(raw) * 8
    assert spare_bits > 0, "this id has no padding bits"
    flipped = pid[:-1] + _B64[_B64.index(pid[-1]) ^ 1]
    assert base64.urlsafe_b64decode(flipped + "=" * (-len(flipped) % 4)) == raw
    dotted = pid[:10] + "...." + pid[10:]  # four, so the padding still works out
    assert base64.urlsafe_b64decode(dotted + "=" * (-len(dotted) % 4)) == raw
    return [flipped, dotted]


def test_feedback_once_per_prediction_id(
    client: HttpClient, names: list[str], request: pytest.FixtureRequest
) -> None:
    rows = _rows(names, 3, request)
    pid = client.post("/v1/predict", {"features": rows[0]}).body["id"]
    first = client.post("/v1/feedback", {"id": pid, "outcome": 1})
    assert first.status == 200, first
    assert first.body == {"id": pid, "version": "v0001", "recorded": True}
    again = client.post("/v1/feedback", {"id": pid, "outcome": 0})
    assert again.status == 409, again
    _check_error(again.body, 409)
    # ids of a batch take feedback too
    batch = client.post("/v1/predict/batch", {"rows": rows[1:]}).body
    for bid in batch["ids"]:
        assert client.post("/v1/feedback", {"id": bid, "outcome": 0}).status == 200
    for bad in (_forge(pid), "not-an-id", "", "A" * 60, pid[:20]):
        reply = client.post("/v1/feedback", {"id": bad, "outcome": 1})
        assert reply.status == 404, (bad, reply)
        _check_error(reply.body, 404)


def test_feedback_for_a_respelled_id_is_not_a_second_outcome(
    client: HttpClient, names: list[str], request: pytest.FixtureRequest
) -> None:
    row = _rows(names, 1, request)[0]
    pid = client.post("/v1/predict", {"features": row}).body["id"]
    assert client.post("/v1/feedback", {"id": pid, "outcome": 1}).status == 200
    statuses = [
        client.post("/v1/feedback", {"id": other, "outcome": 0}).status
        for other in _respell(pid)
    ]  # fmt: skip
    assert all(status in (404, 409) for status in statuses), statuses


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"id": "ID", "outcome": 2}', 422),
        (b'{"id": "ID", "outcome": true}', 422),
        (b'{"id": "ID"}', 422),
        (b'{"id": 5, "outcome": 1}', 422),
        (b'{"id": "ID", "outcome": 1, "x": 0}', 422),
        (b"{", 400),
    ],
    ids=["outcome 2", "outcome bool", "no outcome", "id not a string", "unknown field", "bad JSON"],
)
def test_feedback_validation_is_4xx(
    client: HttpClient, names: list[str], body: bytes, status: int
) -> None:
    pid = client.post("/v1/predict", {"features": dict.fromkeys(names, 0.125)}).body["id"]
    reply = client.post("/v1/feedback", raw=body.replace(b"ID", pid.encode()))
    assert reply.status == status, reply
    _check_error(reply.body, status)


# --- health, metrics, OpenAPI -----------------------------------------------------------------
def test_health_metrics_and_openapi(client: HttpClient, names: list[str]) -> None:
    assert client.post("/v1/predict", {"features": dict.fromkeys(names, 0.5)}).status == 200
    live = client.get("/livez")
    assert live.status == 200 and live.body["alive"] is True
    ready = client.get("/readyz")
    assert ready.status == 200 and ready.body["ready"] is True
    assert ready.body["versions"] == ["v0001"]
    metrics = client.get("/metrics")
    assert metrics.status == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.body
    assert "# TYPE ultrathink_serve_requests_total counter" in text
    served = [
        line for line in text.splitlines()
        if line.startswith('ultrathink_serve_requests_total{version="v0001"}')
    ]  # fmt: skip
    assert served and float(served[0].split()[-1]) >= 1
    assert "ultrathink_serve_ready 1.0" in text
    doc = client.get("/openapi.json")
    assert doc.status == 200
    assert doc.headers["content-type"] == "application/json"
    assert doc.body["openapi"].startswith("3.")
    assert "post" in doc.body["paths"]["/v1/predict"]
    assert "/v1/predict/batch" in doc.body["paths"]
    models = client.get("/v1/models")
    assert models.status == 200 and models.body["ready"] is True
    assert models.body["models"][0]["features"] == names


# --- the CLI's refusals -----------------------------------------------------------------------
@pytest.fixture
def held_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


BAD_INPUT = {
    "ab weights not 100": (("--ab", "v0001=70,v0002=20"), "add up to 100"),
    "unknown version": (("--model", "v0042"), "v0042"),
    "unknown ab version": (("--ab", "v0001=50,v0042=50"), "v0042"),
    "port in use": ((), "cannot listen"),
    "key file readable by others": ((), "chmod 600"),
    "empty registry": ((), "has no model to serve"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_serve_bad_input_is_a_one_line_error_with_exit_2(
    cli_subprocess: CliRunner, registry: Path, tmp_path: Path, held_port: int, case: str
) -> None:
    extra, expected = BAD_INPUT[case]
    args = ["serve", "--port", "0", "--registry", str(registry), *extra]
    if case == "port in use":
        args[2] = str(held_port)
    elif case == "key file readable by others":
        key = tmp_path / "key"
        key.write_text("k" * 32 + "\n")
        os.chmod(key, 0o644)
        args += ["--api-key-file", str(key)]
    elif case == "empty registry":
        (tmp_path / "empty").mkdir()
        args[4] = str(tmp_path / "empty")
    result = cli_subprocess(*args)
    assert result.code == 2, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.err


# --- readiness and stopping -------------------------------------------------------------------
def test_not_ready_until_the_models_are_warm(
    tmp_path_factory: pytest.TempPathFactory, registry: Path, names: list[str]
) -> None:
    home = tmp_path_factory.mktemp("ready") / "home"
    proc = ServeProcess(
        home, "--registry", str(registry), "--ab", "v0001=50,v0002=50", wait_ready=False
    )
    with proc:
        # the socket listens before the models load: ask at once, before waiting for anything
        printed_before = any(line.startswith("ready in ") for line in proc.output)
        with HttpClient(proc.port) as c:
            first = c.get("/readyz")
            predict = c.post("/v1/predict", {"features": dict.fromkeys(names, 0.0)})
            live = c.get("/livez")
            if first.status == 200:
                # only if warm-up (> 1 s) ended in the instant before this first request: the
                # ready line is then printed right after it; nothing else can be asserted
                proc.expect(r"^ready in ")
            else:
                assert not printed_before
                assert first.status == 503, first
                assert first.body["ready"] is False
                assert "loading" in first.body["reason"]
                assert live.status == 200  # alive while not ready
                if predict.status == 503:
                    assert predict.body["error"].startswith("not ready")
                else:  # it became ready between the two requests
                    assert predict.status == 200
                # readiness flips to 200 only with the warm models, never back
                statuses = [first.status]

                def became_ready() -> bool:
                    statuses.append(c.get("/readyz").status)
                    assert statuses[-1] in (200, 503)
                    return statuses[-1] == 200

                wait_until(became_ready, "/readyz 200", timeout_s=180, interval_s=0.02)
                assert statuses.index(200) == len(statuses) - 1
                proc.expect(r"^ready in ")
            assert c.get("/readyz").body == {
                "ready": True, "versions": ["v0001", "v0002"], "worker": 0
            }  # fmt: skip
            assert c.post("/v1/predict", {"features": dict.fromkeys(names, 0.0)}).status == 200
        assert proc.stop() == 0


def test_sigterm_drains_and_exits_0(
    tmp_path_factory: pytest.TempPathFactory, registry: Path
) -> None:
    home = tmp_path_factory.mktemp("term") / "home"
    with ServeProcess(home, "--registry", str(registry), "--model", "v0001") as proc:
        idle = HttpClient(proc.port)  # an idle keep-alive connection must not hold the stop
        assert idle.get("/readyz").status == 200
        code = proc.stop(signal.SIGTERM)
        idle.close()
    assert code == 0, "".join(proc.output)
    assert proc.output[-1].strip() == "stopped (drained)"
    assert "Traceback" not in "".join(proc.output)
