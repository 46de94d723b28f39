"""The CPU of one span's checks and decoding, in-process: the JSON decoder, the OTLP receiver's screening and
the worker's OTLP decoder, on the benchmark's spans (the OTLP ones made by the SDK's own encoder).

The pipeline sections meter whole processes, where a change of a few per cent in one function is lost in the
spread between runs. This isolates the functions: run it in two checkouts, alternately, on one machine
(`bench/results/otlp_decode_8e8afc6.md` shows how), and compare the best of several passes.

    PYTHONPATH=. .venv/bin/python bench/decode_cost.py       # PYTHONPATH names the checkout measured
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from bench.data import sample_messages
from bench.otlp_data import otlp_requests
from panopticon.processing.otlp import decode_traces_record, screen_traces
from panopticon.processing.otlp_codec import PROTO, parse_traces
from panopticon.processing.schemas import decode_span

PASSES = 5
MAX_BYTES = 1 << 24


def best_us(run: Callable[[], object], items: int, passes: int = PASSES) -> float:
    """Microseconds per item of the fastest pass: the least disturbed by the rest of the machine."""
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return round(best / items * 1e6, 2)


def measure(events: int = 30_000, seed: int = 1) -> dict[str, float | int]:
    spans = [m for m in sample_messages(events, seed=seed) if m.kind == "span"]
    requests = [raw for raw, _ids in otlp_requests(spans)]
    now_ms = int(time.time() * 1000)

    def json_decode() -> None:
        for offset, message in enumerate(spans):
            decode_span(message.value, topic="t", partition=0, offset=offset, now_ms=now_ms)

    def otlp_screen() -> None:  # on fresh requests: screening drops bad spans in place
        for request in [parse_traces(raw, PROTO) for raw in requests]:
            screen_traces(request, now_ms)

    def otlp_parse() -> None:
        for raw in requests:
            parse_traces(raw, PROTO)

    def otlp_decode() -> None:
        for offset, raw in enumerate(requests):
            decode_traces_record(raw, topic="t", partition=0, offset=offset, now_ms=now_ms, max_bytes=MAX_BYTES)

    count = len(spans)
    parse = best_us(otlp_parse, count)
    return {
        "spans": count,
        "json_decode_us": best_us(json_decode, count),
        "otlp_parse_us": parse,
        "otlp_screen_us": round(best_us(otlp_screen, count) - parse, 2),  # the parse it needs is taken off
        "otlp_decode_us": best_us(otlp_decode, count),
    }


if __name__ == "__main__":
    print(json.dumps(measure()))
