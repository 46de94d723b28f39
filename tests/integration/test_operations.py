"""What operators watch: the bridge's /metrics shows the ingest after sample traffic, web's shows the API."""

from __future__ import annotations

import re
import signal
import time
import urllib.request

from panopticon import sample
from panopticon.api import create_app
from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.integration.test_procfile import free_port
from tests.integration.traffic import wait_for_count


def metric_values(text: str, name: str) -> dict[str, float]:
    """{label set: value} of one metric in Prometheus text format."""
    out = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        out[match.group(1) or ""] = float(match.group(2))
    return out


def test_bridge_metrics_after_sample_traffic(namespace: Settings, store: SearchStore, processes) -> None:
    settings = namespace.replace(bridge_metrics_port=free_port(), stream_throughput_interval_seconds=1)
    messages = list(sample.generate(60, seed=3))
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    processes.wait_for_log(bridge, "assigned", timeout=60)
    sample.send(settings, iter(messages))
    assert wait_for_count(store, len(messages)) == len(messages)
    time.sleep(2)
    text = urllib.request.urlopen(f"http://127.0.0.1:{settings.bridge_metrics_port}/metrics", timeout=5).read().decode()
    created = metric_values(text, "panopticon_bulk_items_total")
    assert sum(v for k, v in created.items() if 'outcome="created"' in k) == len(messages)
    assert sum(metric_values(text, "panopticon_messages_consumed_total").values()) == len(messages)
    assert sum(metric_values(text, "panopticon_batch_messages_count").values()) > 0
    assert metric_values(text, "panopticon_offset_commits_total")[""] > 0
    lags = metric_values(text, "panopticon_consumer_lag")
    assert lags and all(v == 0 for v in lags.values()), lags


def test_web_metrics_count_requests_and_cache(namespace: Settings, store: SearchStore) -> None:
    client = create_app(namespace).test_client()
    for _ in range(2):
        assert client.get("/query/services/checkout/metrics?start=1h").status_code == 200
    text = client.get("/metrics").data.decode()
    requests = metric_values(text, "panopticon_http_requests_total")
    assert requests['{route="/query/services/<serviceName>/metrics",status="200"}'] >= 2
    cache = metric_values(text, "panopticon_cache_requests_total")
    assert cache.get('{result="hit"}', 0) >= 1 and cache.get('{result="miss"}', 0) >= 1


def test_web_metrics_show_the_rollup_mark_the_job_stored(namespace: Settings, store: SearchStore) -> None:
    from panopticon.rollup.job import set_mark

    watermark_ms = (int(time.time()) - 600) * 1000
    set_mark(store, watermark_ms)
    text = create_app(namespace).test_client().get("/metrics").data.decode()
    assert metric_values(text, "panopticon_rollup_watermark_seconds")[""] == watermark_ms / 1000
    lag = metric_values(text, "panopticon_rollup_lag_seconds")[""]
    assert 600 <= lag < 660, lag


def test_a_restarted_idle_bridge_reports_no_lag(namespace: Settings, store: SearchStore, processes) -> None:
    """Before its first message the consumer's position is unknown: the lag counts from the committed offset,
    not from the start of the topic."""
    settings = namespace.replace(bridge_metrics_port=free_port(), stream_throughput_interval_seconds=1)
    messages = list(sample.generate(80, seed=5))
    processes.start("worker", settings)
    first = processes.start("bridge", settings)
    processes.wait_for_log(first, "assigned", timeout=60)
    sample.send(settings, iter(messages))
    assert wait_for_count(store, len(messages)) == len(messages)
    time.sleep(3)  # a commit (every second), then SIGTERM commits again and leaves the group
    processes.kill(first, signal.SIGTERM)
    second = processes.start("bridge", settings)
    processes.wait_for_log(second, "assigned", timeout=90)
    time.sleep(4)  # a fetch answered (the high watermark is known) and a few throughput reports
    text = urllib.request.urlopen(f"http://127.0.0.1:{settings.bridge_metrics_port}/metrics", timeout=5).read().decode()
    lags = metric_values(text, "panopticon_consumer_lag")
    assert lags and all(value == 0 for value in lags.values()), lags
