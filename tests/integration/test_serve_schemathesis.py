"""Property tests of a live ``ultrathink serve`` against its own ``/openapi.json`` (schemathesis).

The schema is loaded from the running server, and every operation is fuzzed with schema-valid
bodies (positive) and, where there is a body, with schema-breaking ones (negative); each
answer must be no 5xx, a documented status, the documented content type and a body matching
the documented schema. Admin operations are called with the API key. Examples are bounded and
derandomized (a fixed seed per operation), so the run is fast and repeatable.

The promote and rollback operations are fuzzed too: a generated version is never one the
server serves (a random string), so promote is refused, and the registry has no promotion to
roll back to, so rollback is refused; neither changes the registry. Routing fuzzing may
change the live routing (e.g. ``{}`` drops the A/B split), which leaves every other operation
valid.

This fuzzing first found every async route (feedback, admin) answering 500 where its check
refused the body (e.g. ``POST /v1/admin/promote {"version": ""}``), fixed in 6fe73f1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from tests.integration.serve_fixtures import ServeProcess, trained_registry

from ultrathink.serving.schema import openapi

MAX_EXAMPLES = 40
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _operations() -> list[Any]:
    params = []
    for path, methods in openapi()["paths"].items():
        for method, op in methods.items():
            modes = [GenerationMode.POSITIVE]
            if "requestBody" in op:  # a body-less operation has nothing negative to send
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                key = (method.upper(), path, mode)
                params.append(pytest.param(*key, id=f"{method.upper()} {path} {mode.value}"))
    return params


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    registry = trained_registry(tmp_path_factory)
    home = tmp_path_factory.mktemp("fuzz") / "home"
    with ServeProcess(home, "--registry", str(registry), "--ab", "v0001=70,v0002=30") as proc:
        yield proc


@pytest.fixture(scope="module")
def schema(server: ServeProcess) -> Any:
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


def test_the_live_schema_lists_every_route(schema: Any, server: ServeProcess) -> None:
    live = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    served = {(m, p) for m, p, _ in (param.values for param in _operations())}
    assert live == served
    assert ("POST", "/v1/predict") in live
    assert len(live) == 12  # every route but GET /openapi.json itself


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_operation_conforms_to_the_schema(
    schema: Any, server: ServeProcess, method: str, path: str, mode: GenerationMode
) -> None:
    operation = schema[path][method]
    headers = {"authorization": f"Bearer {server.api_key}"}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(mode))
    def conforms(case: Any) -> None:
        case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

    conforms()
    # the fuzzing never took the server down
    assert server.call("GET", "/readyz")[0] == 200


def test_the_schema_module_matches_the_live_document(server: ServeProcess) -> None:
    status, live = server.call("GET", "/openapi.json")
    assert status == 200
    assert live == openapi()
    assert live["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert live["paths"]["/v1/admin/promote"]["post"]["security"] == [{"apiKey": []}]


def test_fuzzing_left_the_registry_alone(server: ServeProcess) -> None:
    from ultrathink.models.registry import ModelRegistry

    registry = Path(server.args[1])
    assert ModelRegistry(registry).production() is None
    assert ModelRegistry(registry).history() == []
