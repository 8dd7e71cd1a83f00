"""The model server's routes: predict, batch, feedback, models, health, metrics and admin.

One ``ServingApp`` per worker process. The request path is synchronous and allocation-light:
route by a dict lookup, check the body by hand (``serving.inputs``), choose the variant
(``serving.routing``), look the vector up in the cache (``serving.cache``), score on a miss,
record the variant's statistics and answer. The shadow model scores after the answer is
written (``loop.call_soon``), so it never adds to a request's latency and its answer is never
returned. Anything slow (loading models, SQLite) runs in a thread and the route returns an
awaitable; admin routes live in ``serving.admin``.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ultrathink.core.clock import LiveClock
from ultrathink.hardening.rate_limit import TokenBucket
from ultrathink.serving.cache import PredictionCache
from ultrathink.serving.http import Request, Response, json_response
from ultrathink.serving.inputs import (
    Invalid,
    check_fields,
    parse_body,
    row_values,
    row_vector,
    rows_matrix,
)
from ultrathink.serving.models import ModelSet, ServedModel
from ultrathink.serving.routing import Routing
from ultrathink.serving.shared import RunDir
from ultrathink.serving.store import IdCodec, ServingStore
from ultrathink.serving.variants import VariantStats

__all__ = ["ServeOptions", "ServingApp"]

_PREDICT_FIELDS = frozenset({"features", "key"})
_BATCH_FIELDS = frozenset({"rows", "key"})
_FEEDBACK_FIELDS = frozenset({"id", "outcome"})
_F64 = np.dtype(np.float64)
_MAX_CLIENTS = 10_000  # rate-limit buckets kept; the oldest go first


@dataclass(frozen=True)
class ServeOptions:
    """Everything a worker needs to serve (built by ``ultrathink serve``)."""

    registry: Path
    model: str
    routing: dict[str, Any]
    run_dir: Path
    serving_db: Path
    api_key: str
    cache_rows: int = 100_000
    cache_bytes: int = 64 * 1024 * 1024
    cache_ttl_s: float | None = 300.0
    max_batch: int = 1000
    max_body: int = 2 * 1024 * 1024
    rate_per_s: float = 20_000.0
    rate_burst: int = 2_000
    workers: int = 1
    worker: int = 0
    host: str = "127.0.0.1"
    port: int = 8100


class ServingApp:
    """See the module docstring. ``handle`` is the HTTP handler."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.worker = options.worker
        self.run_dir = RunDir(options.run_dir)
        self.store = ServingStore(options.serving_db)
        self.ids = IdCodec(self.store.mac_key(), options.worker)
        self.cache = PredictionCache(options.cache_rows, options.cache_bytes, options.cache_ttl_s)
        self.routing = Routing.from_dict(options.routing)
        self.models = ModelSet()
        self.stats: dict[str, VariantStats] = {}
        self.ready = False
        self.generation = 0
        self.reload_tokens: dict[str, int] = {}
        self.last_error: str | None = None
        self.seq = 0
        self._clock = LiveClock()
        self._buckets: dict[str, TokenBucket] = {}
        self._api_key = options.api_key.encode()
        from ultrathink.serving import admin, schema

        self.admin = admin.Admin(self)
        self._openapi = schema.openapi_bytes()
        self._routes: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("POST", "/v1/predict"): self.predict,
            ("POST", "/v1/predict/batch"): self.predict_batch,
            ("POST", "/v1/feedback"): self.feedback,
            ("GET", "/v1/models"): self.list_models,
            ("GET", "/v1/ab"): self.ab_status,
            ("GET", "/livez"): self.livez,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/metrics"): self.metrics,
            ("GET", "/openapi.json"): self.openapi,
            ("POST", "/v1/admin/reload"): self.admin.reload,
            ("POST", "/v1/admin/routing"): self.admin.set_routing,
            ("POST", "/v1/admin/promote"): self.admin.promote,
            ("POST", "/v1/admin/rollback"): self.admin.rollback,
        }
        self._paths: dict[str, list[str]] = {}
        for method, path in self._routes:
            self._paths.setdefault(path, []).append(method)

    # --- dispatch ---------------------------------------------------------------------------
    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """Route one request; every refusal is a JSON error naming the reason."""
        route = self._routes.get((request.method, request.path))
        if route is None:
            return self._no_route(request)
        try:
            if request.path.startswith("/v1/"):
                limited = self._rate_limited(request.client)
                if limited is not None:
                    return limited
                if request.path.startswith("/v1/admin/") and not self._authorized(request):
                    return _error(
                        401, "admin routes need the API key: send 'Authorization: Bearer KEY' "
                        "with the key from --api-key-file", (("www-authenticate", "Bearer"),),
                    )  # fmt: skip
            result: Response | Awaitable[Response] = route(request)
        except Invalid as exc:
            return json_response(exc.status, exc.payload())
        if isinstance(result, Response):
            return result
        return _refusing(result)

    def _no_route(self, request: Request) -> Response:
        methods = self._paths.get(request.path)
        if methods is None:
            return _error(404, f"no route {request.path}; see GET /openapi.json")
        allow = ", ".join(sorted(methods))
        return _error(
            405, f"{request.method} is not allowed on {request.path}; use {allow}",
            (("allow", allow),),
        )  # fmt: skip

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else ""
        return bool(given) and hmac.compare_digest(given.encode(), self._api_key)

    def _rate_limited(self, client: str) -> Response | None:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= _MAX_CLIENTS:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[client] = TokenBucket(
                self.options.rate_per_s, self.options.rate_burst, self._clock
            )
        if bucket.try_acquire():
            return None
        retry = max(1, math.ceil(bucket.wait_ns() / 1e9))
        return _error(
            429, f"rate limit: at most {self.options.rate_per_s:g} requests/s per client "
            f"(burst {self.options.rate_burst}); retry after {retry} s",
            (("retry-after", str(retry)),),
        )  # fmt: skip

    def _not_ready(self) -> Response:
        return _error(503, "not ready: models are loading and warming up; poll GET /readyz")

    def _variant(self, key: Any) -> tuple[ServedModel, ServedModel]:
        if key is not None and type(key) is not str:
            raise Invalid(422, "key", "must be a string (e.g. the symbol) or absent", key)
        self.seq += 1
        version = self.routing.choose(key, self.seq)
        models = self.models.models
        return models[version], models[self.routing.primary]

    # --- prediction -------------------------------------------------------------------------
    def predict(self, request: Request) -> Response:
        if not self.ready:
            return self._not_ready()
        t0 = time.perf_counter_ns()
        body = parse_body(request.body)
        check_fields(body, _PREDICT_FIELDS, ("features",))
        model, primary = self._variant(body.get("key"))
        values = row_values(body["features"], model, primary)
        version = model.version
        key = model.packer.pack(*values)
        hit = self.cache.get(version, key)
        if hit is None:
            x = np.frombuffer(key, _F64)  # the same bytes, no copy
            try:
                answer = model.answer(x)
            except Exception as exc:
                return self._variant_failed(model, primary, body["features"], exc, t0)
            entry = (answer[0], model.answer_json(answer))
            self.cache.put(version, key, entry, 64 + len(entry[1]))
        else:
            entry = hit
        p = entry[0]
        self.stats[version].record(time.perf_counter_ns() - t0, p, cached=hit is not None)
        if self.routing.shadow is not None and version == self.routing.primary:
            asyncio.get_running_loop().call_soon(self._shadow, body["features"], primary, p)
        return self._respond(model, entry, hit is not None)

    def _respond(self, model: ServedModel, entry: tuple[float, bytes], cached: bool) -> Response:
        # the answer's JSON is encoded once, when the model scores, and kept in the cache: a
        # hit only adds its id and the cached flag (the same bytes a miss sent, bit for bit)
        pid = self.ids.make(model.version, entry[0], self.seq)
        head = b'{"id":"%s","cached":%s,' % (pid.encode(), b"true" if cached else b"false")
        return Response(200, head + entry[1])

    def _answer(
        self, model: ServedModel, answer: tuple[float, tuple[str, ...]], cached: bool
    ) -> Response:
        return self._respond(model, (answer[0], model.answer_json(answer)), cached)

    def _variant_failed(
        self, model: ServedModel, primary: ServedModel, features: Any, exc: Exception, t0: int
    ) -> Response:
        # a variant that raises counts an error (a canary may roll back for it); the primary
        # answers instead, so the client does not see a failure
        self.stats[model.version].record(time.perf_counter_ns() - t0, None, error=True)
        self.last_error = f"{model.version} raised {type(exc).__name__}: {exc}"
        if model is primary:
            return _error(503, f"model {model.version} failed to score: {type(exc).__name__}")
        answer = primary.answer(row_vector(features, primary, primary))
        self.stats[primary.version].record(time.perf_counter_ns() - t0, answer[0])
        return self._answer(primary, answer, False)

    def _shadow(self, features: Any, primary: ServedModel, p_primary: float) -> None:
        shadow = self.models.get(self.routing.shadow or "")
        if shadow is None:
            return
        stats = self.stats[shadow.version]
        t0 = time.perf_counter_ns()
        try:
            p: float | None = shadow.predict_row(row_vector(features, shadow, primary))
        except Exception:  # an Invalid (features it needs) or a scoring error: a shadow error
            p = None
        threshold = primary.entry_threshold
        stats.record_shadow(time.perf_counter_ns() - t0, p, p_primary, threshold=threshold)

    def predict_batch(self, request: Request) -> Response:
        if not self.ready:
            return self._not_ready()
        t0 = time.perf_counter_ns()
        body = parse_body(request.body)
        check_fields(body, _BATCH_FIELDS, ("rows",))
        model, primary = self._variant(body.get("key"))
        X = rows_matrix(body["rows"], model, primary, self.options.max_batch)
        probs = model.predict_batch(X)
        seq = self.seq
        ids = [
            self.ids.make(model.version, float(p), seq * 100_000 + i) for i, p in enumerate(probs)
        ]
        self.stats[model.version].record(time.perf_counter_ns() - t0, float(np.mean(probs)))
        return json_response(
            200,
            {
                "version": model.version,
                "probabilities": probs.tolist(),
                "ids": ids,
                "entry_threshold": model.entry_threshold,
                "exit_threshold": model.exit_threshold,
            },
        )

    async def feedback(self, request: Request) -> Response:
        body = parse_body(request.body)
        check_fields(body, _FEEDBACK_FIELDS, ("id", "outcome"))
        pid, outcome = body["id"], body["outcome"]
        if type(pid) is not str:
            raise Invalid(422, "id", "must be the id string of an earlier prediction", pid)
        if type(outcome) is not int or outcome not in (0, 1):
            raise Invalid(422, "outcome", "must be 0 or 1 (the realised up move)", outcome)
        known = self.ids.read(pid)
        if known is None:
            return _error(404, "id: not a prediction id issued by this server")
        version, p = known
        added = await asyncio.to_thread(self.store.add_feedback, pid, version, p, outcome)
        if not added:
            return _error(409, "id: this prediction already has its outcome recorded")
        return json_response(200, {"id": pid, "version": version, "recorded": True})

    # --- status -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """This worker's figures, as written to its stats file."""
        return {
            "worker": self.worker,
            "ready": self.ready,
            "generation": self.generation,
            "last_error": self.last_error,
            "variants": {v: s.snapshot() for v, s in self.stats.items()},
            "cache": self.cache.stats().to_dict(),
        }

    def merged(self) -> dict[str, Any]:
        """Every worker's figures merged: per variant, and the cache totals."""
        snaps = [self.snapshot(), *self.run_dir.other_stats(self.worker)]
        versions = sorted({v for s in snaps for v in s.get("variants", {})})
        variants = {
            v: VariantStats.merge([s["variants"][v] for s in snaps if v in s.get("variants", {})])
            for v in versions
        }
        cache: dict[str, float] = {}
        for s in snaps:
            for k, val in s.get("cache", {}).items():
                if isinstance(val, (int, float)) and k != "hit_ratio":
                    cache[k] = cache.get(k, 0) + val
        looked = cache.get("hits", 0) + cache.get("misses", 0)
        cache["hit_ratio"] = cache.get("hits", 0) / looked if looked else 0.0
        return {
            "variants": variants,
            "cache": cache,
            "workers": [
                {k: s.get(k) for k in ("worker", "ready", "generation", "last_error")}
                for s in snaps
            ],
        }

    def list_models(self, request: Request) -> Response:
        merged = self.merged()
        weights = self.routing.effective_weights()
        models = []
        for version in self.routing.versions():
            model = self.models.get(version)
            entry: dict[str, Any] = model.describe() if model else {"version": version}
            entry["role"] = _role(self.routing, version)
            entry["traffic_pct"] = weights.get(version, 0.0)
            entry["stats"] = merged["variants"].get(version)
            models.append(entry)
        return json_response(
            200,
            {
                "ready": self.ready,
                "generation": self.generation,
                "routing": self.routing.to_dict(),
                "models": models,
                "cache": merged["cache"],
                "workers": merged["workers"],
                "last_error": self.last_error,
            },
        )

    async def ab_status(self, request: Request) -> Response:
        return json_response(200, await asyncio.to_thread(self.admin.ab_report))

    def livez(self, request: Request) -> Response:
        return json_response(200, {"alive": True, "worker": self.worker})

    def readyz(self, request: Request) -> Response:
        if not self.ready:
            return json_response(
                503, {"ready": False, "reason": self.last_error or "loading and warming up models"}
            )
        return json_response(
            200, {"ready": True, "versions": sorted(self.models.models), "worker": self.worker}
        )

    def metrics(self, request: Request) -> Response:
        from ultrathink.serving.metrics import render

        body, content_type = render(self)
        return Response(200, body, content_type)

    def openapi(self, request: Request) -> Response:
        return Response(200, self._openapi)

    # --- state changes (the event loop's thread only) ---------------------------------------
    def install(
        self,
        models: ModelSet,
        routing: Routing,
        invalidate: list[str],
        generation: int,
        reloads: dict[str, int],
    ) -> None:
        """Swap in new models and routing of a control ``generation`` and its reload tokens;
        drop the cache of reloaded versions."""
        for version in invalidate:
            self.cache.invalidate(version)
        for version in routing.versions():
            self.stats.setdefault(version, VariantStats(version))
        self.models = models
        self.routing = routing
        self.generation, self.reload_tokens = generation, dict(reloads)


async def _refusing(pending: Awaitable[Response]) -> Response:
    # an async route refuses a request the same way a synchronous one does
    try:
        return await pending
    except Invalid as exc:
        return json_response(exc.status, exc.payload())


def _role(routing: Routing, version: str) -> str:
    if version == routing.shadow:
        return "shadow"
    if routing.canary is not None and version == routing.canary.version:
        return "canary"
    return "primary" if version == routing.primary else "variant"


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return json_response(status, {"error": message, "status": status}, headers)
