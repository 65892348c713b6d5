"""Prometheus metrics: HTTP traffic measured by an ASGI middleware, the rest read at scrape time.

Each app builds its own `CollectorRegistry` (never the process-wide default),
so several apps in one process (as in the tests) keep separate figures.
Figures that live in the store (jobs by status, ratings, the tokens/s of every
logged answer) are read when Prometheus scrapes, so they survive restarts and
count answers from the UI, the API, comparisons and A/B tests alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from api.errors import STATUS
from api.login import api_user
from core.errors import DiskFull, disk_full
from core.store import Database

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKENS_PER_S_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
JOB_STATUSES = ("queued", "running", "stopping", "completed", "stopped", "failed")


class StoreCollector:
    """Jobs by status, ratings and the generation speed of logged answers, from the store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> list[Metric]:
        return []  # figures come from the store; nothing to check at registration time

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "refinery_training_jobs", "Training jobs by status.", labels=["status"]
        )
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update(self.db.fetch_all("SELECT status, count(*) FROM training_jobs GROUP BY 1"))
        for status, count in sorted(counts.items()):
            jobs.add_metric([status], count)
        yield jobs
        ratings = GaugeMetricFamily("refinery_ratings", "Ratings stored (one per rater and turn).")
        ratings.add_metric([], self.db.fetch_one("SELECT count(*) FROM ratings")[0])
        yield ratings
        yield self._tokens_per_s()

    def _tokens_per_s(self) -> HistogramMetricFamily:
        cumulative = ", ".join("count(*) FILTER (WHERE tokens_per_s <= ?)"
                               for _ in TOKENS_PER_S_BUCKETS)
        row = self.db.fetch_one(
            f"SELECT {cumulative}, count(*), coalesce(sum(tokens_per_s), 0) FROM interactions",
            list(TOKENS_PER_S_BUCKETS),
        )
        *below, total, summed = row
        buckets = [(str(float(bound)), n) for bound, n in zip(TOKENS_PER_S_BUCKETS, below,
                                                              strict=True)]
        return HistogramMetricFamily(
            "refinery_generation_tokens_per_second",
            "Generation speed of every logged answer (chat, compare, A/B).",
            buckets=[*buckets, ("+Inf", total)], sum_value=summed,
        )


@dataclass
class Metrics:
    """One registry per app: HTTP counters and histogram, queue gauges and the store collector."""

    db: Database
    queued: Callable[[], int] = lambda: 0  # generation requests admitted, waiting for the model
    model_in_use: Callable[[], bool] = lambda: False
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "refinery_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "refinery_http_request_duration_seconds",
            "Time from request to the last byte of the response, by route template.",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        queue = Gauge("refinery_generation_queue_depth",
                      "Generation requests waiting behind the one that holds the model.",
                      registry=self.registry)
        queue.set_function(lambda: float(self.queued()))
        model = Gauge("refinery_model_in_use", "1 while a generation holds the model.",
                      registry=self.registry)
        model.set_function(lambda: float(self.model_in_use()))
        self.registry.register(StoreCollector(self.db))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe(self, *, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)


def route_template(scope: dict) -> str:
    """The matched route's full path template, so raw ids never become label values.

    An included router's route knows only its own part of the path; the prefix
    is the part of the request path in front of what that route matched.
    """
    route = scope.get("route")
    template, regex = getattr(route, "path", None), getattr(route, "path_regex", None)
    if not isinstance(template, str) or regex is None:
        return "unmatched"
    path = scope["path"]
    for cut in (index for index, char in enumerate(path) if char == "/"):
        if regex.match(path[cut:]):
            return path[:cut] + template
    return template


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request once, timing it to the response's end."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app raises before answering

        async def tracking_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if disk_full(error):
                status = STATUS[DiskFull]  # what the error handler outside this middleware sends
            raise
        finally:
            self.metrics.observe(route=route_template(scope), method=scope["method"],
                                 status=status, seconds=time.perf_counter() - started)


def install_metrics(app, services) -> Metrics:
    """Add the middleware and `GET /metrics` (Prometheus text format) to a FastAPI app."""
    from fastapi import Depends, Response

    metrics = Metrics(services.db, queued=lambda: services.admission.queued,
                      model_in_use=services.models.use_lock.locked)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # With login on, Prometheus scrapes with basic_auth like any API client.
    @app.get("/metrics", include_in_schema=False,
             dependencies=[Depends(api_user(services.auth))])
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(content=body, media_type=content_type)

    return metrics
