"""Changing what a running server serves: start-up, reload, routing, promote, rollback, canary.

Every change has one shape: under the run directory's lock, read the control file, work out
the new routing and which versions to (re)load, load them in a thread (verified, compiled,
warmed up, see ``serving.models``), and only when all loaded, write the control file with a
raised generation and swap the references on the event loop. A load that fails changes
nothing: the old models keep serving and the answer (409) says why. The other workers follow
the control file (``follow``); the admin answer waits, within a bound, until they have.

A canary is judged twice a second on every worker's merged figures; a breach of its error
rate or p99 rolls it back the same way, with the reason in the events table.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ultrathink.errors import ConfigError, UltrathinkError
from ultrathink.serving.http import Request, Response, json_response
from ultrathink.serving.inputs import Invalid, check_fields, parse_body
from ultrathink.serving.models import ModelSet, load_served, resolve_version
from ultrathink.serving.routing import Routing
from ultrathink.serving.variants import compare, quality

if TYPE_CHECKING:
    from ultrathink.serving.app import ServingApp

__all__ = ["Admin"]

_POLL_S = 0.25
_STATS_EVERY = 2  # polls
_FOLLOW_WAIT_S = 60.0


class _NothingToDo(Exception):
    """A change another worker has already made (raised by a plan under the lock)."""


class Admin:
    """The admin routes and the background loop of one worker."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self._lock = asyncio.Lock()
        self._seen_mtime = 0

    # --- start-up and following -------------------------------------------------------------
    async def start(self) -> None:
        """Load what the routing needs, then report ready; the first worker writes control."""
        app = self.app

        def work() -> tuple[ModelSet, Routing, int, dict[str, int]]:
            with app.run_dir.locked():
                control = app.run_dir.read_control()
                if control is None:
                    control = {"generation": 1, "routing": app.routing.to_dict(), "reloads": {}}
                    app.run_dir.write_control(control)
                routing = Routing.from_dict(control["routing"])
            loaded = [load_served(app.options.registry, v) for v in routing.versions()]
            return (
                ModelSet().with_models(loaded, []),
                routing,
                control["generation"],
                control["reloads"],
            )

        try:
            models, routing, generation, reloads = await asyncio.to_thread(work)
        except UltrathinkError as exc:
            app.last_error = str(exc)
            raise
        app.install(models, routing, [], generation, reloads)
        app.ready = True
        app.run_dir.write_stats(app.worker, app.snapshot())

    async def follow(self) -> None:
        """Apply newer control generations, write this worker's stats, judge the canary."""
        app, ticks = self.app, 0
        while True:
            await asyncio.sleep(_POLL_S)
            ticks += 1
            mtime = app.run_dir.control_mtime()
            if mtime != self._seen_mtime and not self._lock.locked():
                self._seen_mtime = mtime
                async with self._lock:
                    await self._apply_control()
            if ticks % _STATS_EVERY == 0:
                await asyncio.to_thread(app.run_dir.write_stats, app.worker, app.snapshot())
                await self._judge_canary()

    async def _apply_control(self) -> None:
        app = self.app
        control = app.run_dir.read_control()
        if control is None or control["generation"] <= app.generation:
            return
        routing = Routing.from_dict(control["routing"])
        reloads: dict[str, int] = control["reloads"]
        stale = [
            v for v in routing.versions()
            if app.models.get(v) is None or reloads.get(v, 0) != app.reload_tokens.get(v, 0)
        ]  # fmt: skip
        try:
            loaded = await asyncio.to_thread(
                lambda: [load_served(app.options.registry, v) for v in stale]
            )
        except UltrathinkError as exc:
            app.last_error = f"generation {control['generation']}: {exc}"
            app.generation = control["generation"]  # do not retry a broken load forever
            return
        models = app.models.with_models(loaded, routing.versions())
        app.install(models, routing, stale, control["generation"], reloads)
        # published at once, not at the next stats tick: the admin worker waits for it
        await asyncio.to_thread(app.run_dir.write_stats, app.worker, app.snapshot())

    # --- one change, the same way for every admin route -------------------------------------
    async def _change(self, who: str, kind: str, plan: Any, detail: dict[str, Any]) -> Response:
        """``plan(control) -> (routing, versions to reload)`` under the lock; see the docstring."""
        app = self.app

        def work() -> tuple[ModelSet, Routing, list[str], dict[str, Any]]:
            with app.run_dir.locked():
                control = app.run_dir.read_control() or {"generation": 0, "reloads": {}}
                routing, reload_versions = plan(control)
                need = [
                    v for v in routing.versions()
                    if v in reload_versions or app.models.get(v) is None
                ]  # fmt: skip
                t0 = time.perf_counter()
                loaded = [load_served(app.options.registry, v) for v in need]
                detail["loaded"] = need
                detail["load_s"] = round(time.perf_counter() - t0, 3)
                reloads = dict(control["reloads"])
                for v in need:
                    reloads[v] = reloads.get(v, 0) + 1
                control = {
                    "generation": control["generation"] + 1,
                    "routing": routing.to_dict(),
                    "reloads": reloads,
                }
                app.run_dir.write_control(control)
            models = app.models.with_models(loaded, routing.versions())
            return models, routing, need, control

        async with self._lock:
            try:
                models, routing, need, control = await asyncio.to_thread(work)
            except _NothingToDo:
                return json_response(200, {"generation": app.generation, "changed": False})
            except Invalid:
                raise
            except (ConfigError, UltrathinkError) as exc:
                app.last_error = f"{kind} failed: {exc}"
                await asyncio.to_thread(app.store.event, f"{kind}_failed", who, {"error": str(exc)})
                return json_response(
                    409, {"error": f"{kind} failed, still serving "
                          f"{', '.join(app.routing.versions())}: {exc}", "status": 409},
                )  # fmt: skip
            # the event first: whoever sees the new routing finds the record of the change
            # (a test read the rolled-back routing, then no canary_rollback row yet)
            await asyncio.to_thread(app.store.event, kind, who, detail)
            app.install(models, routing, need, control["generation"], control["reloads"])
            self._seen_mtime = app.run_dir.control_mtime()
            # published at once: every worker's /v1/models shows this generation from now on
            await asyncio.to_thread(app.run_dir.write_stats, app.worker, app.snapshot())
        applied = await self._wait_for_workers(control["generation"])
        return json_response(
            200,
            {
                "generation": control["generation"],
                "routing": routing.to_dict(),
                "loaded": need,
                "load_s": detail["load_s"],
                "workers_applied": applied,
            },
        )

    async def _wait_for_workers(self, generation: int) -> int:
        app = self.app
        deadline = time.monotonic() + _FOLLOW_WAIT_S
        while True:
            others = app.run_dir.other_stats(app.worker)
            done = sum(1 for s in others if s.get("generation", 0) >= generation)
            if done >= app.options.workers - 1 or time.monotonic() > deadline:
                return done + 1
            await asyncio.sleep(_POLL_S)

    # --- the routes -------------------------------------------------------------------------
    async def reload(self, request: Request) -> Response:
        body = parse_body(request.body or b"{}")
        check_fields(body, frozenset({"version"}), ())
        version = body.get("version")
        app = self.app
        if version is not None and version not in app.routing.versions():
            raise Invalid(
                422, "version", f"is not served; served: {app.routing.versions()}", version
            )

        def plan(control: dict[str, Any]) -> tuple[Routing, list[str]]:
            routing = app.routing
            if version is None and app.options.model == "production" and routing.canary is None:
                prod = resolve_version(app.options.registry, "production")
                if prod != routing.primary and len(routing.weights) == 1:
                    shadow = routing.shadow if routing.shadow != prod else None
                    routing = Routing.build(prod, None, shadow, None)
            return routing, [version] if version else routing.versions()

        return await self._change(request.client, "reload", plan, {"version": version})

    async def set_routing(self, request: Request) -> Response:
        body = parse_body(request.body)
        check_fields(body, frozenset({"primary", "ab", "shadow", "canary"}), ())
        canary = body.get("canary")
        if canary is not None and (
            type(canary) is not dict or set(canary) - {"version", "pct"} or "version" not in canary
        ):
            raise Invalid(
                422, "canary", 'must be {"version": "vNNNN", "pct": number} or null', canary
            )
        app = self.app
        try:
            routing = Routing.build(
                body.get("primary") or app.routing.primary,
                body.get("ab"),
                body.get("shadow"),
                (canary["version"], float(canary.get("pct", 5))) if canary else None,
            )
            for v in routing.versions():
                resolve_version(app.options.registry, v)
        except (ConfigError, UltrathinkError, TypeError, ValueError) as exc:
            raise Invalid(422, "routing", str(exc), body) from None
        return await self._change(
            request.client, "routing", lambda c: (routing, []), {"routing": routing.to_dict()}
        )

    async def promote(self, request: Request) -> Response:
        body = parse_body(request.body)
        check_fields(body, frozenset({"version", "force"}), ("version",))
        version, force = body["version"], body.get("force", False)
        if type(force) is not bool:
            raise Invalid(422, "force", "must be true or false", force)
        app = self.app
        if type(version) is not str or version not in app.routing.versions():
            raise Invalid(
                422, "version", f"must be a served version: {app.routing.versions()}", version
            )
        test = await asyncio.to_thread(self._compare, app.routing.primary, version)
        if not force and not (test["significant"] and test["better"] == "b"):
            hint = f"force it with `ultrathink serve promote {version} --force` (or force: true)"
            error = f"promote refused: {test['verdict']}; {hint}"
            return json_response(409, {"error": error, "status": 409, "test": test})
        from ultrathink.models.registry import ModelRegistry

        await asyncio.to_thread(ModelRegistry(app.options.registry).promote, version)
        routing = Routing.build(version, None, None, None)
        detail = {"version": version, "force": force, "test": test}
        return await self._change(request.client, "promote", lambda c: (routing, []), detail)

    async def rollback(self, request: Request) -> Response:
        check_fields(parse_body(request.body or b"{}"), frozenset(), ())
        from ultrathink.models.registry import ModelRegistry

        app = self.app
        try:
            version = await asyncio.to_thread(ModelRegistry(app.options.registry).rollback)
        except UltrathinkError as exc:
            return json_response(409, {"error": f"rollback failed: {exc}", "status": 409})
        routing = Routing.build(version, None, None, None)
        return await self._change(
            request.client, "rollback", lambda c: (routing, []), {"version": version}
        )

    # --- A/B figures and the canary ---------------------------------------------------------
    def _compare(self, incumbent: str, candidate: str) -> dict[str, Any]:
        a_p, a_y = self.app.store.feedback(incumbent)
        b_p, b_y = self.app.store.feedback(candidate)
        return compare(a_p, a_y, b_p, b_y)

    def ab_report(self) -> dict[str, Any]:
        """Per variant: traffic, latency, predictions, feedback quality; tests vs the primary."""
        app = self.app
        routing = app.routing
        merged = app.merged()["variants"]
        weights = routing.effective_weights()
        variants = []
        for version in routing.versions():
            p, y = app.store.feedback(version)
            variants.append(
                {
                    "version": version,
                    "traffic_pct": weights.get(version, 0.0),
                    "role": "shadow" if version == routing.shadow else (
                        "primary" if version == routing.primary else "candidate"),
                    "stats": merged.get(version),
                    "quality": quality(p, y) if len(p) else {"n": 0},
                }
            )  # fmt: skip
        tests = [
            {"incumbent": routing.primary, "candidate": v["version"],
             **self._compare(routing.primary, v["version"])}
            for v in variants if v["role"] == "candidate"
        ]  # fmt: skip
        return {
            "primary": routing.primary,
            "routing": routing.to_dict(),
            "variants": variants,
            "tests": tests,
            "events": app.store.events(10),
        }

    async def _judge_canary(self) -> None:
        app = self.app
        canary = app.routing.canary
        if canary is None or self._lock.locked():
            return
        figures = app.merged()["variants"].get(canary.version) or {}
        latency = figures.get("latency_us") or {}
        reason = canary.breach(
            int(figures.get("requests", 0)), int(figures.get("errors", 0)),
            float(latency.get("p99", 0.0)) / 1000.0,
        )  # fmt: skip
        if reason is None:
            return

        def plan(control: dict[str, Any]) -> tuple[Routing, list[str]]:
            current = Routing.from_dict(control["routing"])
            if current.canary is None or current.canary.version != canary.version:
                raise _NothingToDo  # another worker rolled it back already
            return current.without_canary(), []

        await self._change("canary-judge", "canary_rollback", plan, {
            "version": canary.version, "reason": reason})  # fmt: skip
