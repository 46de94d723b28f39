"""The flow table: every stream's decoder and task can be found, and the worker refuses to start without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from panopticon import flow
from panopticon.processing.decoders import decoder_for
from panopticon.processing.schemas import Decoded, Rejected
from panopticon.settings import load_settings
from panopticon.worker import create_celery

HERE = Path(__file__).parent  # no .env files here


@pytest.mark.parametrize("stream", flow.STREAMS, ids=lambda s: s.name)
def test_every_stream_has_a_decoder_that_keeps_the_record_contract(stream: flow.Stream) -> None:
    decode = decoder_for(stream)
    items = decode(b"not json", topic="t", partition=0, offset=7, now_ms=1_714_564_800_000, max_bytes=1024)
    assert isinstance(items, tuple) and len(items) == 1
    assert isinstance(items[0], Rejected) and items[0].index is None


def test_topics_map_to_streams_with_this_deployments_names() -> None:
    settings = load_settings({"KAFKA_APM_LOG_TOPIC": "a.logs", "KAFKA_APM_SPAN_TOPIC": "a.spans",
                              "KAFKA_OTLP_SPAN_TOPIC": "a.otlp_spans", "KAFKA_OTLP_LOG_TOPIC": "a.otlp_logs"},
                             root=HERE)
    table = flow.streams_by_topic(settings)
    assert {topic: s.name for topic, s in table.items()} == {"a.logs": "logs", "a.spans": "spans",
                                                             "a.otlp_spans": "otlp_spans",
                                                             "a.otlp_logs": "otlp_logs"}
    assert table["a.logs"].forwards_errors and not table["a.spans"].forwards_errors
    assert table["a.otlp_logs"].forwards_errors and not table["a.otlp_spans"].forwards_errors
    assert frozenset({flow.LOGS}) == flow.ERROR_FORWARDING_DATA_STREAMS


def test_otlp_streams_take_their_size_limit_and_encoding_from_settings() -> None:
    settings = load_settings({"OTLP_MAX_BODY_BYTES": "2097152", "KAFKA_OTLP_ENCODING": "otlp_json"}, root=HERE)
    assert flow.stream("otlp_spans").max_bytes(settings) == 2_097_152
    assert flow.stream("otlp_logs").encoding(settings) == "otlp_json"
    assert flow.stream("spans").max_bytes(settings) == settings.max_message_bytes
    assert flow.stream("spans").encoding(settings) is None


def test_a_span_record_decodes_to_one_document() -> None:
    raw = (b'{"trace_id":"t1","span_id":"s1","service_name":"svc","name":"GET /","start_time":1714564800000,'
           b'"duration_ms":5}')
    (item,) = decoder_for(flow.stream("spans"))(raw, topic="t", partition=0, offset=1, now_ms=1_714_564_800_000,
                                                 max_bytes=1024)
    assert isinstance(item, Decoded) and item.doc_id == "t1:s1"


def test_celery_registers_every_task_the_flow_names() -> None:
    app = create_celery(load_settings({}, root=HERE))
    app.loader.import_default_modules()
    names = {flow.BULK_INDEX, flow.ROLLUP_DUE, flow.ROLLUP_WINDOW, flow.ROLLUP_RETENTION}
    assert names <= set(app.tasks)


def test_a_task_module_that_cannot_be_imported_stops_the_worker() -> None:
    """The worker imports `include` at start (Celery's loader); a missing module must fail it, never be skipped."""
    app = create_celery(load_settings({}, root=HERE), task_modules=(*flow.TASK_MODULES, "panopticon.no_such_tasks"))
    with pytest.raises(ModuleNotFoundError, match="panopticon.no_such_tasks"):
        app.loader.import_default_modules()


# --- the hand-off format ------------------------------------------------------------------------------
def test_records_travel_as_columns_and_come_back_as_they_were_read() -> None:
    values = [b'{"a":1}', b"", b"\x00\xff binary", "é".encode() * 1000]
    records = flow.Records.of([0, 3, 3, 2**31 - 1], [0, 2**40, 2**40 + 1, 7], values)
    wire = records.to_wire()
    assert wire[:2] == [flow.RECORDS_FORMAT, "zstd"] and all(isinstance(part, bytes) for part in wire[2:])
    assert len(wire[5]) < len(records.data)  # compressed
    back = flow.Records.from_wire(wire)
    assert list(back) == [(0, 0, values[0]), (3, 2**40, b""), (3, 2**40 + 1, values[2]), (2**31 - 1, 7, values[3])]
    assert len(back) == 4


def test_records_from_a_bridge_of_the_previous_release_are_read_too() -> None:
    legacy = [[1, 10, b"x"], (2, 11, bytearray(b"yz"))]
    assert list(flow.Records.from_wire(legacy)) == [(1, 10, b"x"), (2, 11, b"yz")]
    assert list(flow.Records.from_wire([])) == []


def _wire(partitions: bytes, offsets: bytes, ends: bytes, data: bytes, codec: str = "none") -> list[object]:
    return [flow.RECORDS_FORMAT, codec, partitions, offsets, ends, data]


Q1, Q3 = (3).to_bytes(8, "little"), (5).to_bytes(8, "little")


@pytest.mark.parametrize("wire", [
    [flow.RECORDS_FORMAT, "none", b"", b""],  # members missing
    _wire(b"\x00" * 4, b"\x00" * 16, Q3 + Q3, b"abcde"),  # 1 partition, 2 offsets
    _wire(b"\x00" * 4, b"\x00" * 8, Q3 + Q3[:4], b"abc"),  # not whole integers
    _wire(b"\x00" * 4, b"\x00" * 8, Q3, b"abc"),  # ends past the data
    _wire(b"\x00" * 4, b"\x00" * 8, Q1, b"abc", codec="zstd"),  # not zstd
    _wire(b"\x00" * 4, b"\x00" * 8, Q1, b"abc", codec="gzip"),  # a codec we do not know
    _wire(b"\x00" * 4, b"\x00" * 8, Q1, "abc"),  # data not bytes
    "records", [[1, 2]], None,
], ids=["short", "ragged", "not-whole", "ends-past-data", "not-zstd", "unknown-codec", "str-data", "a-string",
        "pairs", "none"])
def test_records_in_any_other_shape_are_refused_with_a_reason(wire: object) -> None:
    with pytest.raises(ValueError, match="records"):
        flow.Records.from_wire(wire)
