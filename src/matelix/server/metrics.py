"""Prometheus metrics (`GET /metrics`, protected like every other route).

HTTP traffic is counted by the access middleware (`server/middleware.py`) by route template. Generation figures are recorded by the inference
routes through `Metrics.record_generation`. Gauges that mirror live state (queue depth, active requests,
loaded models, training progress) are read at scrape time from providers registered on the app, so the
metrics never drift from what the engine and the run directory say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# A provider returns (metric name, help, {label tuple: value}, label names) for one gauge family.
GaugeProvider = Callable[[], Iterable[tuple[str, str, dict[tuple[str, ...], float], tuple[str, ...]]]]


class _LiveGauges(Collector):
    def __init__(self) -> None:
        self.providers: list[GaugeProvider] = []

    def collect(self):
        for provider in self.providers:
            try:
                families = list(provider())
            except Exception:  # a scrape must never fail because one subsystem is mid-change
                continue
            for name, help_text, samples, labels in families:
                family = GaugeMetricFamily(name, help_text, labels=list(labels))
                for label_values, value in samples.items():
                    family.add_metric(list(label_values), value)
                yield family


class Metrics:
    """All metrics of one app instance, in a registry of its own (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("matelix_http_requests", "HTTP requests by route template and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("matelix_http_request_duration_seconds", "HTTP request duration.",
                                 ["route"], registry=self.registry)
        self.generated_tokens = Counter("matelix_generated_tokens", "Tokens generated, by model.",
                                        ["model"], registry=self.registry)
        self.prompt_tokens = Counter("matelix_prompt_tokens", "Prompt tokens processed, by model.",
                                     ["model"], registry=self.registry)
        self.ttft = Histogram("matelix_time_to_first_token_seconds", "Time from request to first token.",
                              ["model"], buckets=TTFT_BUCKETS, registry=self.registry)
        self.live = _LiveGauges()
        self.registry.register(self.live)

    def add_gauges(self, provider: GaugeProvider) -> None:
        self.live.providers.append(provider)

    def record_generation(self, model: str, *, prompt_tokens: int, completion_tokens: int,
                          ttft_s: float | None) -> None:
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generated_tokens.labels(model).inc(completion_tokens)
        if ttft_s is not None:
            self.ttft.labels(model).observe(ttft_s)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
