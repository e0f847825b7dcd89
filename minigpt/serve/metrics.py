"""Prometheus metrics of the server (`GET /metrics`): requests, tokens, throughput, queue, batch, latency.

Each app has its own registry, so that several servers (tests) in one process do not collide. The
engine reports every decoding step (`observe_step`, from its thread; prometheus-client is thread-safe);
the queue length and the running batch are read from the engine when scraped.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minigpt.inference.continuous import ContinuousBatcher

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    """The metrics of one server; `rate_window_s` is the window of the tokens/s gauge."""

    def __init__(self, rate_window_s: float = 10.0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("minigpt_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("minigpt_prompt_tokens", "prompt tokens of served requests", registry=r)
        self.generated_tokens = Counter("minigpt_generated_tokens", "tokens generated", registry=r)
        self.latency = Histogram(
            "minigpt_request_latency_seconds",
            "time from request to last token",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "minigpt_time_to_first_token_seconds",
            "time from request to first token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.step_batch = Histogram(
            "minigpt_step_batch_size",
            "rows per engine step (running and joining requests)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.filtered = Counter(
            "minigpt_filter_interventions",
            "choices the safety filter blocked or rewrote",
            ["where", "action", "principle"],
            registry=r,
        )
        self.tokens_per_second = Gauge(
            "minigpt_tokens_per_second", "tokens generated per second, recent window", registry=r
        )
        self.tokens_per_second.set_function(self._rate)
        self.queue_length = Gauge("minigpt_queue_length", "requests waiting for a batch row", registry=r)
        self.batch_size = Gauge("minigpt_batch_size", "requests decoding now", registry=r)
        self.window = rate_window_s
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def watch(self, engine: ContinuousBatcher) -> None:
        """Read the queue length and running batch from `engine` at each scrape."""
        self.queue_length.set_function(lambda: engine.queue_length)
        self.batch_size.set_function(lambda: engine.batch_size)

    def observe_step(self, rows: int, tokens: int) -> None:
        """One engine step: `rows` in its forward pass, `tokens` produced (the engine's `on_step`)."""
        if rows:
            self.step_batch.observe(rows)
        self.generated_tokens.inc(tokens)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, tokens))
            while self._recent and self._recent[0][0] < now - self.window:
                self._recent.popleft()

    def _rate(self) -> float:
        """Tokens per second over the last `window` seconds."""
        now = time.monotonic()
        with self._lock:
            return sum(n for t, n in self._recent if t >= now - self.window) / self.window

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware: counts every answered request by its route and status (`minigpt_requests_total`).

    A plain ASGI wrapper rather than Starlette's `@app.middleware("http")` (`BaseHTTPMiddleware`), which
    runs each request through a task group and memory streams of its own: Python work on the event loop's
    thread that holds the interpreter lock while the engine's thread waits for it (docs/serving.md).
    """

    def __init__(self, app: ASGIApp, requests: Counter) -> None:
        self.app, self.requests = app, requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes the app is answered with 500 outside this middleware

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")  # the matched route's path: unknown paths must not add labels
            self.requests.labels(getattr(route, "path", "unmatched"), str(status)).inc()
