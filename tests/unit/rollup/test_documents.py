"""Rollup documents: deterministic ids, monthly indices, lossless round trips, exact merges."""

from __future__ import annotations

from pathlib import Path

from panopticon.model.histogram import Histogram
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.documents import (
    HOURLY,
    Exemplars,
    Key,
    Row,
    doc_id,
    metrics_index,
    metrics_indices,
    row_of,
    to_document,
)
from panopticon.rollup.job import expired_indices, row_from_bucket, with_service_totals
from panopticon.settings import load_settings

SETTINGS = load_settings({"INDEX_PREFIX": "p-"}, root=Path(__file__).parent)  # no .env files there
MAY_31_2024 = 1_717_199_940_000  # 2024-05-31T23:59:00Z
JUNE_1_2024 = MAY_31_2024 + 60_000


def row(*durations: float, errors: int = 0) -> Row:
    histogram = Histogram()
    for d in durations:
        histogram.add(d)
    aggregate = Aggregate(len(durations), errors, sum(durations), min(durations), max(durations), histogram)
    slowest = max(durations)
    return Row(aggregate, Exemplars({"trace_id": f"t{slowest}", "span_id": f"s{slowest}", "duration_ms": slowest}))


def test_doc_id_is_deterministic_and_distinguishes_every_part_of_the_key() -> None:
    key = Key("checkout", "production", "POST /orders")
    same = doc_id("1m", Key("checkout", "production", "POST /orders"), MAY_31_2024)
    assert doc_id("1m", key, MAY_31_2024) == same
    others = {
        doc_id(HOURLY, key, MAY_31_2024),
        doc_id("1m", key, JUNE_1_2024),
        doc_id("1m", Key("checkout", "staging", "POST /orders"), MAY_31_2024),
        doc_id("1m", Key("checkout", "production", "GET /cart"), MAY_31_2024),
        doc_id("1m", Key("checkout", "production"), MAY_31_2024),
        doc_id("1m", Key("checkout", "production", ""), MAY_31_2024),  # an empty endpoint is not the total
        doc_id("1m", Key("search", "production", "POST /orders"), MAY_31_2024),
    }
    assert same not in others and len(others) == 7


def test_monthly_index_comes_from_the_window_time() -> None:
    assert metrics_index(SETTINGS, MAY_31_2024) == "p-metrics-apm-2024.05"
    assert metrics_index(SETTINGS, JUNE_1_2024) == "p-metrics-apm-2024.06"
    assert metrics_indices(SETTINGS, MAY_31_2024, JUNE_1_2024) == "p-metrics-apm-2024.05"
    assert metrics_indices(SETTINGS, MAY_31_2024, JUNE_1_2024 + 1) == "p-metrics-apm-2024.05,p-metrics-apm-2024.06"
    dec = 1_733_011_200_000  # 2024-12-01
    assert metrics_indices(SETTINGS, dec, dec + 40 * 86_400_000) == "p-metrics-apm-2024.12,p-metrics-apm-2025.01"


def test_document_round_trip_keeps_counts_histogram_and_exemplars() -> None:
    original = row(1.5, 20.0, 20.1, 300.0, errors=1)
    document = to_document("1m", Key("a", "prod", "GET /"), MAY_31_2024, original, JUNE_1_2024)
    assert document["@timestamp"] == "2024-05-31T23:59:00.000Z" and document["scope"] == "endpoint"
    back = row_of(document)
    assert back.aggregate == original.aggregate
    assert back.exemplars == original.exemplars


def test_service_total_merges_endpoints_exactly() -> None:
    rows = {Key("a", "prod", "GET /x"): row(1.0, 2.0), Key("a", "prod", "GET /y"): row(500.0, errors=1),
            Key("b", "prod", "GET /x"): row(7.0)}
    out = with_service_totals(rows)
    total = out[Key("a", "prod")].aggregate
    assert (total.requests, total.errors, total.duration_sum, total.duration_max) == (3, 1, 503.0, 500.0)
    assert total.histogram == Histogram({**row(1.0, 2.0).aggregate.histogram._counts,
                                         **row(500.0).aggregate.histogram._counts})
    assert out[Key("a", "prod")].exemplars.slowest["duration_ms"] == 500.0
    assert out[Key("b", "prod")].aggregate.requests == 1 and len(out) == 5


def test_hourly_merge_of_minutes_equals_one_histogram_of_all_values() -> None:
    minutes = [row(1.0, 2.0, 3.0), row(40.0), row(2.0, 900.0, errors=1)]
    hour = Row()
    for minute in minutes:
        hour.merge(minute)
    everything = row(1.0, 2.0, 3.0, 40.0, 2.0, 900.0)
    assert hour.aggregate.histogram == everything.aggregate.histogram
    assert hour.aggregate.percentiles() == everything.aggregate.percentiles()
    assert (hour.aggregate.requests, hour.aggregate.errors) == (6, 1)


def test_exemplar_merge_is_deterministic_on_ties() -> None:
    a = Exemplars({"trace_id": "t1", "span_id": "s2", "duration_ms": 5.0}, None)
    b = Exemplars({"trace_id": "t2", "span_id": "s1", "duration_ms": 5.0},
                  {"trace_id": "t3", "span_id": "s3", "duration_ms": 1.0})
    a.merge(b)
    assert a.slowest["span_id"] == "s1" and a.error["trace_id"] == "t3"


def test_row_from_an_engine_bucket() -> None:
    hit = {"hits": {"hits": [{"_source": {"trace_id": "t", "span_id": "s", "duration_ms": 9.0}}]}}
    bucket = {"key": {}, "doc_count": 3, "histogram": {"buckets": [{"key": 100.0, "doc_count": 2},
                                                                    {"key": 500.0, "doc_count": 1}]},
              "sum": {"value": 12.0}, "min": {"value": 1.0}, "max": {"value": 9.0}, "slowest": hit,
              "errors": {"doc_count": 0, "slowest": {"hits": {"hits": []}}}}
    parsed = row_from_bucket(bucket)
    assert parsed.aggregate.histogram == Histogram({100: 2, 500: 1})
    assert (parsed.aggregate.requests, parsed.aggregate.errors) == (3, 0)
    assert parsed.exemplars.slowest == {"trace_id": "t", "span_id": "s", "duration_ms": 9.0}
    assert parsed.exemplars.error is None


def test_expired_indices_drop_whole_months_only() -> None:
    names = ["p-metrics-apm-2024.03", "p-metrics-apm-2024.04", "p-metrics-apm-2024.05", "p-metrics-apm-junk",
             "q-metrics-apm-2024.01"]
    # 30 days before June 1st is May 2nd: April ended before it, May did not.
    assert expired_indices(names, "p-", JUNE_1_2024, 30) == ["p-metrics-apm-2024.03", "p-metrics-apm-2024.04"]
    assert expired_indices(["p-metrics-apm-2023.12"], "p-", 1_704_067_200_000 + 86_400_000, 1) == \
        ["p-metrics-apm-2023.12"]
