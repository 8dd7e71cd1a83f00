"""The model server's OpenAPI 3.1 document, built from pydantic models of each body.

The request path checks bodies by hand (``serving.inputs``) for speed; these models are the
contract those checks implement, and the schemathesis tests hold the server to it.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["openapi", "openapi_bytes"]

Features = dict[str, float] | list[float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Strict):
    features: Features = Field(description="by name, or a list in GET /v1/models' order")
    key: str | None = Field(default=None, description="sticky routing key, e.g. the symbol")


class Decision(BaseModel):
    entry_threshold: float
    exit_threshold: float
    out_of_range: list[str]


class PredictResponse(BaseModel):
    id: str
    version: str
    probability: float = Field(ge=0, le=1)
    cached: bool
    decision: Decision


class BatchRequest(_Strict):
    rows: list[Features] = Field(min_length=1)
    key: str | None = None


class BatchResponse(BaseModel):
    version: str
    probabilities: list[float]
    ids: list[str]
    entry_threshold: float
    exit_threshold: float


class FeedbackRequest(_Strict):
    id: str
    outcome: Literal[0, 1]


class FeedbackResponse(BaseModel):
    id: str
    version: str
    recorded: bool


class ErrorBody(BaseModel):
    error: str
    status: int
    field: str | None = None
    rule: str | None = None
    value: Any = None


class ReloadRequest(_Strict):
    version: str | None = None


class Canary(_Strict):
    version: str
    pct: float = Field(default=5.0, gt=0, le=50)


class RoutingRequest(_Strict):
    primary: str | None = None
    ab: dict[str, int] | None = None
    shadow: str | None = None
    canary: Canary | None = None


class PromoteRequest(_Strict):
    version: str
    force: bool = False


class ChangeResponse(BaseModel):
    generation: int
    routing: dict[str, Any]
    loaded: list[str]
    load_s: float
    workers_applied: int


_MODELS = (
    PredictRequest, PredictResponse, BatchRequest, BatchResponse, FeedbackRequest,
    FeedbackResponse, ErrorBody, ReloadRequest, RoutingRequest, PromoteRequest, ChangeResponse,
)  # fmt: skip


def _ref(model: type[BaseModel] | None) -> dict[str, Any]:
    if model is None:
        return {"type": "object"}
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _op(
    summary: str,
    request: type[BaseModel] | None,
    response: type[BaseModel] | None,
    errors: tuple[int, ...],
    *,
    admin: bool = False,
    required: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if request is not None:
        op["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": _ref(request)}},
        }
    op["responses"]["200"] = {
        "description": "OK", "content": {"application/json": {"schema": _ref(response)}}
    }  # fmt: skip
    all_errors = (*errors, 429) if not admin else (*errors, 401, 429)
    for status in sorted(set(all_errors)):
        op["responses"][str(status)] = {
            "description": "error", "content": {"application/json": {"schema": _ref(ErrorBody)}}
        }  # fmt: skip
    if admin:
        op["security"] = [{"apiKey": []}]
    return op


_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _plain(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": content}


def openapi() -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    body = (400, 413, 422)
    paths = {
        "/v1/predict": {
            "post": _op("score one row", PredictRequest, PredictResponse, (*body, 503))
        },
        "/v1/predict/batch": {
            "post": _op("score up to --max-batch rows", BatchRequest, BatchResponse, (*body, 503))
        },
        "/v1/feedback": {
            "post": _op(
                "record the outcome of a prediction",
                FeedbackRequest,
                FeedbackResponse,
                (*body, 404, 409),
            )
        },
        "/v1/models": {"get": _op("loaded versions, routing and figures", None, None, ())},
        "/v1/ab": {"get": _op("per-variant results and significance tests", None, None, ())},
        "/v1/admin/reload": {
            "post": _op(
                "reload versions from the registry",
                ReloadRequest,
                ChangeResponse,
                (*body, 409),
                admin=True,
                required=False,
            )
        },
        "/v1/admin/routing": {
            "post": _op(
                "change A/B weights, shadow, canary",
                RoutingRequest,
                ChangeResponse,
                (*body, 409),
                admin=True,
            )
        },
        "/v1/admin/promote": {
            "post": _op(
                "promote a variant (A/B test must pass unless force)",
                PromoteRequest,
                ChangeResponse,
                (*body, 409),
                admin=True,
            )
        },
        "/v1/admin/rollback": {
            "post": _op(
                "roll the registry back and serve its production version",
                None,
                ChangeResponse,
                (*body, 409),
                admin=True,
            )
        },
    }
    for path, summary in (("/livez", "process alive"), ("/readyz", "models loaded and warm")):
        responses = {"200": _plain("OK", _JSON_OBJECT), "503": _plain("not ready", _JSON_OBJECT)}
        paths[path] = {"get": {"summary": summary, "responses": responses}}
    text = {"text/plain": {"schema": {"type": "string"}}}
    paths["/metrics"] = {
        "get": {"summary": "Prometheus metrics", "responses": {"200": _plain("OK", text)}}
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ULTRATHINK model server", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_bytes() -> bytes:
    return orjson.dumps(openapi())
