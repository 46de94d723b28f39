"""A small service instrumented with the OpenTelemetry Python SDK, exporting OTLP/HTTP to the `otlp` process.

`flask send-otlp-sample` runs it (and `make run` keeps it running), so a new user sees OTLP data next to the
JSON sample traffic: an online shop, `otel-shop`, whose requests are SERVER spans with HTTP attributes and a
database CLIENT span each; a few fail with a recorded exception (an ERROR log on the live stream), and its
Python `logging` lines travel as OTLP logs with their trace context.

It uses the SDK, which is a development dependency (`pip install -e '.[dev]'`, as `make run` does).
"""

from __future__ import annotations

import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from panopticon.settings import Settings

SERVICE = "otel-shop"
# route -> (median latency in ms, the query its database span runs)
ROUTES: dict[str, tuple[float, str]] = {
    "/cart": (18.0, "SELECT * FROM carts WHERE user_id = ?"),
    "/cart/items": (35.0, "INSERT INTO cart_items VALUES (?, ?, ?)"),
    "/products/{id}": (9.0, "SELECT * FROM products WHERE id = ?"),
}
METHODS = {"/cart": "GET", "/cart/items": "POST", "/products/{id}": "GET"}
_MS = 1_000_000


def endpoint(settings: Settings) -> str:
    host = "127.0.0.1" if settings.otlp_bind_host in ("0.0.0.0", "::", "") else settings.otlp_bind_host
    return f"http://{host}:{settings.otlp_http_port}"


def wait_for_receiver(settings: Settings, timeout: float = 120.0) -> bool:
    """True once the receiver answers /healthz (make run starts everything at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{endpoint(settings)}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    return False


class Shop:
    """The instrumented service: a tracer, a logger whose records go out as OTLP logs, and its request handler."""

    def __init__(self, settings: Settings, *, error_ratio: float, seed: int | None = None) -> None:
        url = endpoint(settings)
        headers = {"Authorization": f"Bearer {settings.api_auth_tokens[0]}"} if settings.api_auth_tokens else {}
        resource = Resource.create({"service.name": SERVICE, "service.version": "1.4.2",
                                    "deployment.environment.name": "production"})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=f"{url}/v1/traces", headers=headers, compression=Compression.Gzip)))
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
            endpoint=f"{url}/v1/logs", headers=headers, compression=Compression.Gzip)))
        self.tracer = self.tracer_provider.get_tracer("otel-shop.web", "1.4.2")
        self.log = logging.getLogger("otel-shop")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.addHandler(LoggingHandler(logger_provider=self.logger_provider))
        self.rng = random.Random(seed)
        self.error_ratio = error_ratio

    def handle(self) -> None:
        """One request, timed as if it had just happened."""
        route = self.rng.choice(list(ROUTES))
        median, query = ROUTES[route]
        latency_ms = median * self.rng.lognormvariate(0, 0.5)
        start = time.time_ns()
        failed = self.rng.random() < self.error_ratio
        span = self.tracer.start_span(f"{METHODS[route]} {route}", kind=SpanKind.SERVER, start_time=start,
                                      attributes={"http.request.method": METHODS[route], "http.route": route,
                                                  "url.scheme": "http", "server.address": "shop.local"})
        with trace.use_span(span, end_on_exit=False):
            db = self.tracer.start_span("SELECT shop", kind=SpanKind.CLIENT, start_time=start + _MS,
                                        attributes={"db.system.name": "postgresql", "db.query.text": query})
            db.end(end_time=start + _MS + int(latency_ms * 0.6 * _MS))
            if failed:
                try:
                    raise ConnectionError("payment provider timed out")
                except ConnectionError as exc:
                    span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, "payment provider timed out"))
                span.set_attribute("http.response.status_code", 503)
                self.log.error("request failed: %s %s", METHODS[route], route)
            else:
                span.set_attribute("http.response.status_code", 200)
                self.log.info("handled %s %s in %.1f ms", METHODS[route], route, latency_ms)
        span.end(end_time=start + int(latency_ms * _MS))

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


def run(settings: Settings, *, count: int, rate: float, error_ratio: float, seed: int | None, forever: bool,
        report: Callable[[str], None]) -> int:
    """Handle `count` requests (at `rate` a second, 0 = at once), again and again with `forever`."""
    shop = Shop(settings, error_ratio=error_ratio, seed=seed)
    handled = 0
    try:
        while True:
            started = time.monotonic()
            for n in range(count):
                shop.handle()
                handled += 1
                if rate > 0:
                    ahead = (n + 1) / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            shop.tracer_provider.force_flush()
            shop.logger_provider.force_flush()
            report(f"{SERVICE}: {handled} requests exported as OTLP to {endpoint(settings)}")
            if not forever:
                return handled
    finally:
        shop.close()
