"""OpenTelemetry in, end to end, with real clients: the Python SDK's OTLP/HTTP exporters (protobuf, gzip or not;
the OpenTelemetry project's OTLP/JSON exporter), and Kafka records exactly as the Collector's kafkaexporter
writes them (the SDK's own encoders), through the real `otlp` process, bridge and worker, read back through
the real query routes, the error topic and rollups."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterator

import orjson
import pytest
import requests
from confluent_kafka import Producer
from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as JsonLogExporter
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import StatusCode

from panopticon.api import create_app
from panopticon.kafka import producer_config
from panopticon.rollup import job
from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES, SearchStore
from tests.integration.processes import ProcessGroup, Receiver, free_port, start_receiver
from tests.integration.traffic import id_counts, read_topic
from tests.otel import (
    MS,
    SeverityNumber,
    encode_logs,
    encode_spans,
    json_encode_logs,
    json_encode_spans,
    log_records,
    recorded_spans,
    resource,
    server_trace,
)

MINUTE_MS = 60_000


@pytest.fixture
def pipeline(namespace: Settings, store: SearchStore, processes: ProcessGroup) -> Iterator[Receiver]:
    """worker + bridge + otlp, on this test's namespace."""
    settings = namespace.replace(otlp_http_port=free_port())
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    receiver = start_receiver(processes, settings)
    processes.wait_for_log(bridge, "assigned", timeout=90)
    yield receiver


def stored(store: SearchStore) -> tuple[int, int]:
    store.refresh(f"{store.settings.index_prefix}*")
    return store.count(store.name(TRACES)), store.count(store.name(LOGS))


def wait_stored(store: SearchStore, spans: int, logs: int, timeout: float = 120.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    counts = stored(store)
    while counts[0] < spans or counts[1] < logs:
        assert time.monotonic() < deadline, f"stored {counts}, expected ({spans}, {logs})"
        time.sleep(0.5)
        counts = stored(store)
    time.sleep(2)  # a late duplicate, if one could happen, lands now
    return stored(store)


def hex_ids(spans) -> set[str]:
    return {f"{s.context.span_id:016x}" for s in spans}


def one_trace_per_request(tracer, count: int, start_ns: int, fail_every: int = 5, route: str = "/items/{id}") -> None:
    for n in range(count):
        server_trace(tracer, route=route, start_ns=start_ns + n * 10 * MS, status_code=500 if n % fail_every == 0
                     else 200, fail=n % fail_every == 0, duration_ms=5 + n)


# --- the SDK over OTLP/HTTP -------------------------------------------------------------------------


def test_sdk_protobuf_export_with_and_without_gzip(pipeline: Receiver, store: SearchStore) -> None:
    url, settings = pipeline.url, pipeline.settings
    start_ns = (time.time_ns() // (60_000 * MS) - 3) * 60_000 * MS  # whole minutes, a few minutes ago
    all_spans, expected_logs = [], 0
    for service, compression in (("shop", Compression.Gzip), ("billing", Compression.NoCompression)):
        with recorded_spans(resource(service)) as (tracer, memory):
            one_trace_per_request(tracer, 20, start_ns)
            spans = memory.get_finished_spans()
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        records = (log_records([f"{service} handled {n}" for n in range(10)], res=resource(service),
                               timestamp_ns=start_ns)
                   + log_records(["card declined"], res=resource(service), severity=SeverityNumber.ERROR,
                                 timestamp_ns=start_ns))
        log_exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=compression)
        assert log_exporter.export(records) == LogRecordExportResult.SUCCESS
        all_spans += spans
        expected_logs += len(records) + 4  # + 4 failed requests, each with an exception event
    counts = wait_stored(store, len(all_spans), expected_logs)
    assert counts == (len(all_spans), expected_logs)
    assert set(id_counts(store, TRACES, "span_id")) == hex_ids(all_spans)

    client = create_app(settings).test_client()
    server = next(s for s in all_spans if s.name == "GET /items/{id}" and s.status.status_code is StatusCode.ERROR)
    trace_id = f"{server.context.trace_id:032x}"
    answer = client.get(f"/query/traces/{trace_id}").get_json()
    assert answer["summary"]["span_count"] == 2 and answer["summary"]["services"] == [server.resource.attributes[
        "service.name"]]
    root = answer["spans"][0]
    assert (root["service_name"], root["http"]["route"], root["status"], root["kind"]) == (
        server.resource.attributes["service.name"], "/items/{id}", "ERROR", "SERVER")
    assert [log["message"] for log in answer["logs"]] == ["RuntimeError: upstream refused"]

    window = f"start={start_ns // MS - MINUTE_MS}&end={start_ns // MS + 5 * MINUTE_MS}"
    shop_logs = client.get(f"/query/logs?service=shop&{window}&limit=100").get_json()
    assert shop_logs["total"] == 11 + 4
    assert client.get(f"/query/logs?service=shop&level=error&q=declined&{window}").get_json()["total"] == 1
    metrics = client.get(f"/query/services/shop/metrics?{window}&interval=1m").get_json()
    assert (metrics["summary"]["requests"], metrics["summary"]["errors"]) == (20, 4)
    endpoints = client.get(f"/query/services/billing/endpoints?{window}").get_json()
    assert [(e["endpoint"], e["requests"], e["errors"]) for e in endpoints["items"]] == [("/items/{id}", 20, 4)]

    # The error stream: exception events and ERROR logs reach the error topic, keyed by their document id.
    errors = read_topic(settings, settings.kafka_apm_log_error_topic)
    assert len({m.key() for m in errors}) == 2 * (4 + 1)


def test_otlp_json_over_http_and_as_records_on_kafka(namespace: Settings, store: SearchStore,
                                                     processes: ProcessGroup) -> None:
    settings = namespace.replace(otlp_http_port=free_port(), kafka_otlp_encoding="otlp_json")
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    receiver = start_receiver(processes, settings)
    processes.wait_for_log(bridge, "assigned", timeout=90)
    start_ns = time.time_ns() - 120_000 * MS
    batches = {}
    for service in ("json-http", "proto-http", "json-kafka"):
        with recorded_spans(resource(service)) as (tracer, memory):
            one_trace_per_request(tracer, 10, start_ns)
            batches[service] = (memory.get_finished_spans(),
                                log_records([f"{service} line {n}" for n in range(5)], res=resource(service)))
    spans, records = batches["json-http"]
    assert JsonSpanExporter(endpoint=f"{receiver.url}/v1/traces").export(spans) == SpanExportResult.SUCCESS
    assert JsonLogExporter(endpoint=f"{receiver.url}/v1/logs").export(records) == LogRecordExportResult.SUCCESS
    spans, records = batches["proto-http"]  # protobuf in, OTLP/JSON records out
    assert OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces").export(spans) == SpanExportResult.SUCCESS
    assert OTLPLogExporter(endpoint=f"{receiver.url}/v1/logs").export(records) == LogRecordExportResult.SUCCESS
    spans, records = batches["json-kafka"]
    producer = Producer(producer_config(settings))
    producer.produce(settings.kafka_otlp_span_topic, json_encode_spans(spans).to_json().encode())
    producer.produce(settings.kafka_otlp_log_topic, json_encode_logs(records).to_json().encode())
    assert producer.flush(30) == 0

    every_span = [s for spans, _ in batches.values() for s in spans]
    expected_logs = sum(len(r) + 2 for _, r in batches.values())  # + 2 exception events a service
    assert wait_stored(store, len(every_span), expected_logs) == (len(every_span), expected_logs)
    assert set(id_counts(store, TRACES, "span_id")) == hex_ids(every_span)
    services = {b["key"]["s"] for b in store.search(store.name(LOGS), {"size": 0, "aggs": {"s": {"composite": {
        "sources": [{"s": {"terms": {"field": "service_name"}}}]}}}})["aggregations"]["s"]["buckets"]}
    assert services == set(batches)
    written = read_topic(settings, settings.kafka_otlp_span_topic)
    assert all(m.value().startswith(b"{") for m in written), "the receiver writes the topic's encoding"


# --- Kafka records as the Collector's kafkaexporter writes them -------------------------------------------------


def test_kafka_records_as_the_collector_writes_them_key_nil_and_trace_id(namespace: Settings, store: SearchStore,
                                                                         processes: ProcessGroup) -> None:
    processes.start("worker", namespace)
    bridge = processes.start("bridge", namespace)
    start_ns = time.time_ns() - 300_000 * MS
    with recorded_spans(resource("collector-fed")) as (tracer, memory):
        one_trace_per_request(tracer, 30, start_ns)
        spans = memory.get_finished_spans()
    records = log_records([f"fed {n}" for n in range(40)], res=resource("collector-fed"))
    producer = Producer(producer_config(namespace))
    half = len(spans) // 2
    # One record per exported batch with key nil (the default) ...
    producer.produce(namespace.kafka_otlp_span_topic, encode_spans(spans[:half]).SerializeToString())
    # ... and, with partition_traces_by_id, one record per trace keyed by its 32-hex trace id.
    by_trace: dict[int, list] = {}
    for span in spans[half:]:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    for trace_id, group in by_trace.items():
        producer.produce(namespace.kafka_otlp_span_topic, encode_spans(group).SerializeToString(),
                         key=f"{trace_id:032x}".encode())
    producer.produce(namespace.kafka_otlp_log_topic, encode_logs(records).SerializeToString())
    # A good record with one bad span: that span alone is dead-lettered, with its index.
    with recorded_spans(resource("collector-fed")) as (tracer, memory):
        one_trace_per_request(tracer, 3, start_ns, fail_every=100)
        mixed = memory.get_finished_spans()
    request = encode_spans(mixed)
    request.resource_spans[0].scope_spans[0].spans[4].ClearField("trace_id")
    bad_span = request.resource_spans[0].scope_spans[0].spans[4].span_id.hex()
    producer.produce(namespace.kafka_otlp_span_topic, request.SerializeToString())
    producer.produce(namespace.kafka_otlp_span_topic, b"\x0a\xff\x01 truncated")  # not decodable: whole record
    assert producer.flush(30) == 0
    exceptions = 6 + 1
    spans = (*spans, *(s for s in mixed if f"{s.context.span_id:016x}" != bad_span))
    assert wait_stored(store, len(spans), len(records) + exceptions) == (len(spans), len(records) + exceptions)
    assert set(id_counts(store, TRACES, "span_id")) == hex_ids(spans)
    letters = {dict(m.headers()).get("panopticon.source.index"): m for m in read_topic(namespace,
                                                                                     namespace.kafka_apm_dlq_topic)}
    assert set(letters) == {b"4", None}
    alone = ExportTraceServiceRequest.FromString(letters[b"4"].value())
    assert [s.span_id.hex() for s in alone.resource_spans[0].scope_spans[0].spans] == [bad_span]
    assert dict(letters[b"4"].headers())["panopticon.error.reason"] == b"traceId: missing (empty or all zero)"
    assert dict(letters[None].headers())["panopticon.error.reason"].startswith(b"not a protobuf")

    # Replayed records (the Collector retried, or the bridge read them again) store nothing twice.
    producer.produce(namespace.kafka_otlp_span_topic, encode_spans(spans[:half]).SerializeToString())
    producer.produce(namespace.kafka_otlp_log_topic, encode_logs(records).SerializeToString())
    assert producer.flush(30) == 0
    processes.wait_for_log(bridge, "batches done", timeout=60)
    time.sleep(6)
    assert stored(store) == (len(spans), len(records) + exceptions)
    assert max(id_counts(store, LOGS, "event_id").values()) == 1


# --- bad input ----------------------------------------------------------------------------------------------


def _post(url: str, body: bytes, content_type: str = "application/x-protobuf", **headers: str) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": content_type, **headers}, timeout=60)


def _send_huge(url: str, size: int, chunked: bool) -> int:
    """POST `size` bytes of body on a raw socket while reading the answer; the status line's code."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n{framing}\r\n"
                 f"\r\n".encode())

    def send() -> None:
        piece = b"\x0a" * (1 << 20)
        try:
            for _ in range(size >> 20):
                sock.sendall(b"100000\r\n" + piece + b"\r\n" if chunked else piece)
        except OSError:
            pass  # the receiver answered 413 and closed: that is the point

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = sock.recv(4096)
    sender.join(60)
    sock.close()
    return int(answer.split(b" ", 2)[1])


def test_bad_input_gets_a_clear_4xx_and_nothing_good_is_lost(pipeline: Receiver, store: SearchStore) -> None:
    url = pipeline.url
    traces_url = f"{url}/v1/traces"
    with recorded_spans(resource("hostile")) as (tracer, memory):
        one_trace_per_request(tracer, 5, time.time_ns() - 60_000 * MS, fail_every=100)
        good = memory.get_finished_spans()
    good_body = encode_spans(good).SerializeToString()
    rss_before = pipeline.rss()

    truncated = _post(traces_url, good_body[: len(good_body) // 2])
    assert truncated.status_code == 400 and b"not a protobuf" in truncated.content
    assert _post(traces_url, good_body, "text/plain").status_code == 415
    base64_ids = orjson.loads(json_encode_spans(good).to_json())
    for span in base64_ids["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        import base64

        span["traceId"] = base64.b64encode(bytes.fromhex(span["traceId"])).decode()
    refused = _post(traces_url, orjson.dumps(base64_ids), "application/json")
    assert refused.status_code == 400 and "not base64" in refused.json()["message"]
    assert _send_huge(url, 100 << 20, chunked=False) == 413
    assert _send_huge(url, 100 << 20, chunked=True) == 413
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join([packer.compress(bytes(1 << 20)) for _ in range(1024)] + [packer.flush()])
    bombed = _post(traces_url, bomb, **{"Content-Encoding": "gzip"})
    assert bombed.status_code == 413 and b"inflates to more than" in bombed.content
    assert _post(traces_url, gzip.compress(good_body)[:-20], **{"Content-Encoding": "gzip"}).status_code == 400
    assert pipeline.rss() - rss_before < 200 * 2**20, "a 1 GiB gzip bomb and 100 MB bodies must not fill memory"

    # 10,000 attributes on one span: stored with the first 128, and the client is told.
    with recorded_spans(resource("hostile"), SpanLimits(max_span_attributes=20_000)) as (tracer, memory):
        tracer.start_span("wide", attributes={f"k{n}": "v" * 20 for n in range(10_000)}).end()
        wide = memory.get_finished_spans()
    answer = ExportTraceServiceResponse.FromString(_post(traces_url, encode_spans(wide).SerializeToString()).content)
    assert answer.partial_success.rejected_spans == 0
    assert "more than 128 attributes" in answer.partial_success.error_message

    # A span without a trace id inside an otherwise good request: counted in partial_success, the rest stored.
    request = encode_spans(good)
    request.resource_spans[0].scope_spans[0].spans[3].ClearField("trace_id")
    lost = request.resource_spans[0].scope_spans[0].spans[3].span_id.hex()
    response = _post(traces_url, request.SerializeToString())
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-protobuf"
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 1 and "traceId: missing" in partial.error_message

    assert wait_stored(store, len(good), 1) == (len(good), 1)  # the first request failed: one exception log
    ids = id_counts(store, TRACES, "span_id")
    assert set(ids) == (hex_ids(good) - {lost}) | hex_ids(wide)
    (wide_doc,) = store.search(store.name(TRACES), {"query": {"term": {"name": "wide"}}})["hits"]["hits"]
    assert len(wide_doc["_source"]["attributes"]) == 129
    assert wide_doc["_source"]["attributes"]["otel"]["dropped_attributes_count"] == 10_000 - 128


def test_bearer_auth_when_tokens_are_set(namespace: Settings, store: SearchStore, processes: ProcessGroup) -> None:
    settings = namespace.replace(otlp_http_port=free_port(), api_auth_tokens=("s3cret",))
    receiver = start_receiver(processes, settings)
    with recorded_spans(resource("auth")) as (tracer, memory):
        tracer.start_span("x").end()
        spans = memory.get_finished_spans()
    body = encode_spans(spans).SerializeToString()
    assert _post(f"{receiver.url}/v1/traces", body).status_code == 401
    assert _post(f"{receiver.url}/v1/traces", body, Authorization="Bearer wrong").status_code == 401
    exporter = OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", headers={"Authorization": "Bearer s3cret"})
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    written = read_topic(settings, settings.kafka_otlp_span_topic)
    assert [m.value() for m in written] == [body]
    assert requests.get(f"{receiver.url}/healthz", timeout=5).status_code == 200


def test_kafka_unavailable_is_503_with_retry_after_never_200(namespace: Settings, processes: ProcessGroup) -> None:
    settings = namespace.replace(otlp_http_port=free_port(), kafka_brokers=f"127.0.0.1:{free_port()}",
                                 otlp_kafka_timeout_seconds=2)
    receiver = start_receiver(processes, settings)
    with recorded_spans(resource("no-kafka")) as (tracer, memory):
        tracer.start_span("x").end()
        body = encode_spans(memory.get_finished_spans()).SerializeToString()
    for _ in range(2):
        answer = _post(f"{receiver.url}/v1/traces", body)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5", answer.content


# --- downstream: rollups ---------------------------------------------------------------------------------------


def test_rollups_of_otlp_spans_match_the_raw_answer(pipeline: Receiver, store: SearchStore) -> None:
    settings = pipeline.settings
    hour_ago = (time.time_ns() // (60_000 * MS) - 130) * 60_000 * MS  # whole minutes, past the raw threshold
    with recorded_spans(resource("rolled")) as (tracer, memory):
        for minute in range(5):
            one_trace_per_request(tracer, 12, hour_ago + minute * 60_000 * MS, fail_every=4, route=f"/m{minute % 2}")
        spans = memory.get_finished_spans()
    assert OTLPSpanExporter(endpoint=f"{pipeline.url}/v1/traces").export(spans) == SpanExportResult.SUCCESS
    wait_stored(store, len(spans), 15)
    start_ms = hour_ago // MS
    # As beat would, once the stored spans have settled: roll until the scan is complete (a catch-up runs
    # in pieces of ROLLUP_MAX_WINDOWS_PER_RUN).
    now = job.now_ms() + settings.settle_seconds * 1000 + 1000
    for _ in range(20):
        if not job.roll_due(store, now).pending:
            break
    store.refresh(f"{store.settings.index_prefix}*")
    client = create_app(settings).test_client()
    url = f"/query/services/rolled/metrics?start={start_ms - MINUTE_MS}&end={start_ms + 10 * MINUTE_MS}&interval=1m"
    answer = client.get(url).get_json()
    assert answer["sources"]["rollup"] is not None
    assert (answer["summary"]["requests"], answer["summary"]["errors"]) == (60, 15)
    raw = create_app(settings.replace(rollup_enabled=False, redis_host=None)).test_client().get(url).get_json()
    assert raw["sources"]["rollup"] is None and raw["summary"] == answer["summary"]
