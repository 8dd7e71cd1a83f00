"""``GET /metrics``: the server's figures in Prometheus text, merged over every worker.

A custom ``prometheus_client`` collector reads the merged snapshot at scrape time, so the
request path only bumps plain counters (``VariantStats``) and pays nothing for Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from ultrathink.serving.app import ServingApp

__all__ = ["render"]

_P = "ultrathink_serve_"


class _Collector:
    def __init__(self, app: ServingApp) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        merged = app.merged()
        yield _gauge(
            "ready", "1 once every model is loaded and warmed up", [([], float(app.ready))]
        )
        yield _gauge("generation", "control generation applied", [([], float(app.generation))])
        weights = app.routing.effective_weights()
        yield _gauge(
            "traffic_share", "routing weight of each answering version (percent)",
            [([v], w) for v, w in weights.items()], ["version"],
        )  # fmt: skip
        variants: dict[str, Any] = merged["variants"]
        rows = list(variants.items())
        yield _counter("requests", "requests answered", [([v], s["requests"]) for v, s in rows])
        yield _counter("errors", "scoring errors", [([v], s["errors"]) for v, s in rows])
        yield _counter(
            "cache_hits", "answers from the cache", [([v], s["cache_hits"]) for v, s in rows]
        )
        lat = GaugeMetricFamily(
            _P + "latency_us", "server-side latency percentiles (HdrHistogram)",
            labels=["version", "quantile"],
        )  # fmt: skip
        for v, s in rows:
            for q in ("p50", "p90", "p99", "max"):
                lat.add_metric([v, q], float(s["latency_us"][q]))
        yield lat
        means = [([v], float(s["prediction_mean"])) for v, s in rows]
        yield _gauge("prediction_mean", "mean probability answered", means, ["version"])
        shadows = [
            ([v], float(s["shadow"]["disagreement_rate"]))
            for v, s in rows
            if s["shadow"]["requests"]
        ]
        yield _gauge(
            "shadow_disagreement_rate", "shadow vs primary decisions that differ", shadows,
            ["version"],
        )  # fmt: skip
        cache = merged["cache"]
        for name in ("hits", "misses", "evictions", "expirations", "invalidated"):
            yield _counter(f"cache_{name}", f"prediction cache {name}", [([], cache.get(name, 0))])
        for name in ("rows", "bytes", "hit_ratio"):
            yield _gauge(f"cache_{name}", f"prediction cache {name}", [([], cache.get(name, 0))])


def _gauge(
    name: str, doc: str, values: list[tuple[list[str], float]], labels: list[str] | None = None
) -> Metric:
    family = GaugeMetricFamily(_P + name, doc, labels=labels or [])
    for lv, value in values:
        family.add_metric(lv, float(value))
    return family


def _counter(name: str, doc: str, values: list[tuple[list[str], float]]) -> Metric:
    family = CounterMetricFamily(
        _P + name, doc, labels=["version"] if values and values[0][0] else []
    )
    for lv, value in values:
        family.add_metric(lv, float(value))
    return family


def render(app: ServingApp) -> tuple[bytes, bytes]:
    """The Prometheus exposition of ``app`` and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(app))
    return generate_latest(registry), CONTENT_TYPE_LATEST.encode()
