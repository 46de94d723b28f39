"""The worker's own CPU per event, in-process: `index_batch` on the benchmark's batches, against the real engine.

The pipeline sections meter whole processes, where a change of a few per cent of a pool process is lost in the
spread between runs. This meters only the CPU of this process (`time.process_time`: decoding, documents, the
bulk body, the engine's answer read back, the bookkeeping; the engine's own work and the wait for it are left
out), one fresh namespace per pass. Run it in two checkouts, alternately, on one machine, and compare the best
passes (`bench/results/worker_batch_f1a3342.md` shows how).

    PYTHONPATH=. .venv/bin/python bench/batch_cost.py       # PYTHONPATH names the checkout measured
"""

from __future__ import annotations

import json
import time

from bench.data import sample_messages
from bench.env import namespace, stack_settings
from bench.hotpath import batches_of
from panopticon.processing.outbox import Outbox
from panopticon.processing.tasks import index_batch

PASSES = 5
BATCH = 10_000


def measure(events: int = 60_000, seed: int = 7) -> dict[str, float | int]:
    stack = stack_settings()
    messages = sample_messages(events, seed=seed)
    batches = batches_of(stack, messages, BATCH)
    best = float("inf")
    for _ in range(PASSES):
        with namespace(stack, "cost") as (settings, store):
            outbox = Outbox(settings)
            spent = 0.0
            for stream, topic, records in batches:
                started = time.process_time()
                index_batch(store, outbox, stream, topic, records, max_retries=2, max_message_bytes=1 << 20)
                spent += time.process_time() - started
            best = min(best, spent)
    return {"events": events, "batch": BATCH, "worker_cpu_us_per_event": round(best / events * 1e6, 2)}


if __name__ == "__main__":
    print(json.dumps(measure()))
