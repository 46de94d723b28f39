"""The fault harness: produce N uniquely identified events, inject one fault, check every id.

A scenario is written as a plain test that uses one `FaultRun`:

    run = FaultRun("kill -9 bridge", settings, store, processes, report)
    run.prepare(12_000)                    # topics + messages (ids carry the namespace)
    run.start("worker"); run.start("bridge")
    run.produce(rate=2_000)                # in the background
    with run.fault():                      # the time the fault lasts; recovery counts from its end
        ...kill something...
    run.finish()                           # waits, checks id by id, writes the report row, asserts

The row says what was produced, what was stored (distinct ids), how many ids were stored twice,
how many messages were dead-lettered, and the time from the end of the fault to the last event stored.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from panopticon.kafka import ensure_topics
from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES, SearchStore
from tests.integration.processes import ProcessGroup, Running
from tests.integration.traffic import Produced, check_exact, make_messages, produce, read_topic

RESULTS = Path(__file__).parent / "results" / "latest.jsonl"
SETTLE_S = 3.0  # after the count is reached: a late duplicate, if one could happen, lands in this time


@dataclass
class Row:
    scenario: str
    produced: int  # messages sent to Kafka, malformed ones included
    valid: int
    stored: int  # distinct ids stored
    lost: int
    duplicates: int  # ids stored more than once
    unexpected: int
    dead_lettered: int  # distinct source offsets in the dead-letter topic
    recovery_s: float | None  # end of the fault -> last event stored
    wall_s: float
    notes: str = ""


@dataclass
class Report:
    """Rows of this session; also appended to tests/faults/results/latest.jsonl as they come."""

    rows: list[Row] = field(default_factory=list)
    started: bool = False

    def add(self, row: Row) -> None:
        RESULTS.parent.mkdir(exist_ok=True)
        with RESULTS.open("w" if not self.started else "a") as out:
            out.write(json.dumps(asdict(row)) + "\n")
        self.started = True
        self.rows.append(row)

    def amend(self, row: Row) -> None:
        """Replace the last row (a scenario that adds notes after its checks) and rewrite the file."""
        self.rows[-1] = row
        RESULTS.write_text("".join(json.dumps(asdict(r)) + "\n" for r in self.rows))

    def table(self) -> str:
        head = f"{'scenario':<44} {'produced':>8} {'stored':>7} {'lost':>5} {'dupes':>5} {'dlq':>5} " \
               f"{'recovery':>9}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}s"
            lines.append(f"{r.scenario:<44} {r.produced:>8} {r.stored:>7} {r.lost:>5} {r.duplicates:>5} "
                         f"{r.dead_lettered:>5} {recovery:>9}")
        return "\n".join(lines)


def ensure_pipeline_topics(settings: Settings) -> None:
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                             settings.kafka_apm_log_error_topic, settings.kafka_apm_dlq_topic])


def stored_total(store: SearchStore) -> int:
    """Documents in both data streams (duplicates would count twice: the id check comes after)."""
    store.refresh(f"{store.settings.index_prefix}*")
    return store.count(store.name(TRACES)) + store.count(store.name(LOGS))


def dead_letter_sources(settings: Settings) -> Counter[tuple[str, int, int]]:
    """(topic, partition, offset) of every dead letter, with how many copies (a re-sent batch adds one)."""
    letters = read_topic(settings, settings.kafka_apm_dlq_topic, timeout=30)
    out: Counter[tuple[str, int, int]] = Counter()
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers() or []}
        assert headers.get("panopticon.error.reason"), "every dead letter carries its reason"
        out[(headers["panopticon.source.topic"], int(headers["panopticon.source.partition"]),
             int(headers["panopticon.source.offset"]))] += 1
    return out


class FaultRun:
    def __init__(self, scenario: str, settings: Settings, store: SearchStore, processes: ProcessGroup,
                 report: Report) -> None:
        self.scenario = scenario
        self.settings = settings
        self.store = store
        self.processes = processes
        self.report = report
        self.messages: list[tuple[str, bytes]] = []
        self.produced = Produced()
        self.producer: threading.Thread | None = None
        self.producer_error: BaseException | None = None
        self.fault_ended: float | None = None
        self.began = time.monotonic()
        self.notes: list[str] = []

    # --- set-up -------------------------------------------------------------------------------------
    def prepare(self, count: int, bad_ratio: float = 0.0, seed: int = 7) -> None:
        ensure_pipeline_topics(self.settings)
        self.messages, self.produced = make_messages(self.settings.index_prefix, count, bad_ratio=bad_ratio,
                                                     seed=seed)

    def start(self, name: str, settings: Settings | None = None, **kwargs) -> Running:
        return self.processes.start(name, settings or self.settings, **kwargs)

    def produce(self, rate: float = 0.0, settings: Settings | None = None) -> None:
        """Send every message in a background thread, at `rate` messages a second (0: as fast as it can)."""
        def send() -> None:
            try:
                produce(settings or self.settings, self.messages, rate=rate)
            except BaseException as exc:  # noqa: BLE001 - re-raised in finish()
                self.producer_error = exc

        self.producer = threading.Thread(target=send, name="fault-producer", daemon=True)
        self.producer.start()

    def producing(self) -> bool:
        return self.producer is not None and self.producer.is_alive()

    @contextlib.contextmanager
    def fault(self) -> Iterator[None]:
        """The span of time the fault lasts; recovery is measured from its end."""
        try:
            yield
        finally:
            self.fault_ended = time.monotonic()

    def note(self, text: str) -> None:
        self.notes.append(text)

    # --- checks -------------------------------------------------------------------------------------
    def wait_stored(self, timeout: float) -> float | None:
        """Wait until as many documents are stored as valid ids were produced; the moment it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stored_total(self.store) >= self.produced.valid:
                return time.monotonic()
            time.sleep(0.5)
        return None

    def finish(self, timeout: float = 300.0, recovered_at: float | None = None) -> Row:
        """Wait for everything, check every id, record the row, and assert 0 lost / 0 duplicated.

        `recovered_at` replaces "the last event stored" as the end of recovery (rollups: caught up)."""
        if self.producer is not None:
            self.producer.join(600)
            assert not self.producer.is_alive(), "the producer did not finish"
        if self.producer_error is not None:
            raise AssertionError(f"producing failed: {self.producer_error!r}")
        caught_up = self.wait_stored(timeout)
        time.sleep(SETTLE_S)
        row = self.row(recovered_at or caught_up)
        self.report.add(row)
        tails = "\n".join(f"--- {r.name} ---\n{r.log_tail(15)}" for r in self.processes.running)
        assert (row.lost, row.duplicates, row.unexpected) == (0, 0, 0), f"{row}\n{tails}"
        assert row.stored == self.produced.valid, f"{row}\n{tails}"
        assert row.dead_lettered == self.produced.bad, f"{row}\n{tails}"
        return row

    def row(self, caught_up: float | None) -> Row:
        exact = check_exact(self.store, self.produced)
        letters = dead_letter_sources(self.settings)
        copies = sum(letters.values()) - len(letters)
        if copies:
            self.note(f"{copies} dead letters sent twice (a re-sent batch)")
        resent = sum(r.log_path.read_text(errors="replace").count("handed off again")
                     for r in self.processes.running if r.name == "bridge" and r.log_path.exists())
        if resent:
            self.note(f"{resent} batches handed off again by the bridge")
        recovery = None
        if caught_up is not None and self.fault_ended is not None:
            recovery = round(max(0.0, caught_up - self.fault_ended), 1)
        return Row(
            scenario=self.scenario, produced=len(self.messages), valid=self.produced.valid,
            stored=exact["stored"], lost=exact["lost"], duplicates=exact["duplicated"],
            unexpected=exact["unexpected"], dead_lettered=len(letters), recovery_s=recovery,
            wall_s=round(time.monotonic() - self.began, 1), notes="; ".join(self.notes))
