"""latest.json, summary.md, perf_table.md (the README's performance table) and the PNG charts, from one run.

    python -m bench.report [DIR]    # summary.md and perf_table.md again from DIR/latest.json (bench/results)
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import orjson

# The figures the issue asks for, as dotted paths into the results (also written flat under "figures").
FIGURES = (
    "ingest.ratio_to_ceiling", "ingest.live_ratio_to_ceiling", "ingest.pipeline_eps", "ingest.ceiling_eps",
    "ingest.own_cpu_s_per_1000.backlog", "ingest.own_cpu_s_per_1000.live",
    "ingest.engine_cpu_s_per_1000.backlog", "ingest.engine_cpu_s_per_1000.live",
    "ingest.engine_cpu_s_per_1000.ceiling", "ingest.eps_per_core",
    "ingest.freshness_p50_ms", "ingest.freshness_p99_ms",
    "errors.p50_ms", "errors.p99_ms", "errors.load_rate", "errors.p99_ms_under_load", "errors.p99_ms_half_capacity",
    "errors.sockets_p99_under_1s",
    "memory.peak_mib", "memory.bound.mib", "memory.holds",
    "compare.ratios.eps", "compare.ratios.own_cpu_s_per_1000", "compare.ratios.engine_cpu_s_per_1000",
    "storage.engine_cpu_ratio.mapping", "storage.engine_cpu_ratio.today",
    "query.p50_ms_1h_cold", "query.p50_ms_24h_cold", "query.p50_ms_7d_cold", "query.p95_ms_7d_cold",
    "query.p50_ms_7d_cached", "query.p95_ms_7d_cached", "query.speedup_24h",
    "otlp.eps_json", "otlp.eps_otlp", "otlp.worker_cpu_ratio_otlp_to_json", "otlp.v1_traces_requests_per_s",
    "otlp.v1_traces_p99_ms",
    "dashboard.services_first_paint_ms_cold", "dashboard.services_first_paint_ms_cached",
    "dashboard.chart_7d_longest_task_ms",
    "dependencies.p50_ms_7d_cold", "dependencies.p50_ms_7d_cached",
    "alerts.cpu_s_per_evaluation", "alerts.engine_cpu_s_per_evaluation", "alerts.wall_s_per_evaluation",
)
# Goals of issue 19.
RATIO_GOAL = 0.8
OWN_CPU_GOAL_S = 0.020
FRESHNESS_P99_GOAL_MS = 1000
ERRORS_IDLE_P99_GOAL_MS = 500
ERRORS_LOADED_P99_GOAL_MS = 1000
# Process names in the order the memory table lists them.
RSS_ORDER = ("bridge", "worker", "relay", "ws", "otlp", "engine", "kafka", "redis", "bench")


def lookup(results: dict[str, Any], path: str) -> Any:
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["figures"] = {path: lookup(results, path) for path in FIGURES}
    charts = []
    with contextlib.suppress(ImportError):
        charts = _charts(results, out)
    results["charts"] = charts
    (out / "latest.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    write_texts(results, out)


def write_texts(results: dict[str, Any], out: Path) -> None:
    (out / "summary.md").write_text(summary(results))
    (out / "perf_table.md").write_text(perf_table(results))


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text}{unit}"


def _not_run(section: dict[str, Any]) -> str | None:
    return section.get("not_run") if isinstance(section, dict) else "missing"


def _safe(lines: Any, title: str, section: dict[str, Any]) -> list[str]:
    """A section's lines; a result that lacks what they read is said so, and the rest of the summary stays."""
    try:
        return list(lines(section))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return [f"## {title}", "", f"not summarised: {type(exc).__name__}: {exc} (see latest.json)"]


def summary(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    lines = [
        "# Benchmark summary",
        "",
        f"Run {r['generated_at']} on {m['cores_logical']} cores ({m['cpu_model']}), {m['memory_gib']} GiB; "
        f"{v.get('engine')}, Kafka {v.get('kafka')}, Redis {v.get('redis')}, Python {v.get('python')}; "
        f"commit {v.get('git_commit')}{' (dirty)' if v.get('git_dirty') else ''}. "
        f"Load average at start: {m['load_average_at_start']}; {r.get('seconds', 0) / 60:.0f} minutes.",
        "",
        f"Reproduce: `{r['command']}`. {r['note']}",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    for path in FIGURES:
        lines.append(f"| `{path}` | {_fmt(r['figures'].get(path))} |")
    for title, make, key in (("Ingest", _ingest_lines, "ingest"), ("Error stream", _error_lines, "errors"),
                             ("Memory", lambda _s: _memory_lines(r), "memory"),
                             ("Before / after", _compare_lines, "compare"),
                             ("Index templates before / after", _storage_lines, "storage"),
                             ("Queries", _query_lines, "query"),
                             ("OTLP", _otlp_lines, "otlp"), ("Dashboard", _dashboard_lines, "dashboard"),
                             ("Service map", _dependency_lines, "dependencies"),
                             ("Alert rules", _alert_lines, "alerts")):
        lines += ["", *_safe(make, title, r.get(key, {}))]
    if r.get("charts"):
        lines += ["", "Charts: " + ", ".join(f"[{Path(c).name}]({Path(c).name})" for c in r["charts"])]
    return "\n".join(lines) + "\n"


def _eps(run: dict[str, Any]) -> str:
    """A run's events/s, starred when it is the overall rate (the run was too short for refresh steps)."""
    return _fmt(run.get("eps")) + ("" if run.get("rate_basis", "steady") == "steady" else "*")


def _cpu_row(name: str, cpu: dict[str, float], own: float | None) -> str:
    return (f"| {name} | **{_fmt(own)}** | {_fmt(cpu.get('bridge'))} | {_fmt(cpu.get('worker'))} | "
            f"{_fmt(cpu.get('engine'))} | {_fmt(cpu.get('kafka'))} | {_fmt(cpu.get('redis'))} | "
            f"{_fmt(cpu.get('bench'))} |")


def _legs(legs: dict[str, Any], last: str) -> str:
    first = legs.get("produce_to_worker_start", {})
    rest = legs.get(last, {})
    return (f"produce -> worker start p50 {_fmt(first.get('p50_ms'), ' ms')} / p99 {_fmt(first.get('p99_ms'), ' ms')}, "
            f"worker start -> {last.rsplit('_', 1)[-1]} p50 {_fmt(rest.get('p50_ms'), ' ms')} / p99 "
            f"{_fmt(rest.get('p99_ms'), ' ms')}")


def _knobs(k: dict[str, Any]) -> str:
    parts = [f"`{name}`={value}" for name, value in {**k.get("settings", {}), **k.get("constants", {}),
                                                     **k.get("kafka", {})}.items()]
    if k.get("engine_refresh_interval"):
        parts.append(f"engine `index.refresh_interval`={k['engine_refresh_interval']}")
    return "; ".join(parts)


def _ingest_lines(i: dict[str, Any]) -> list[str]:
    if why := _not_run(i):
        return ["## Ingest", "", f"not run: {why}"]
    best = i["ceiling_best"]
    ceiling_run = i["ceiling_best_run"]
    live = i["pipeline_live"]
    fresh_half = i["freshness"]["half_capacity"]
    own = i["own_cpu_s_per_1000"]
    lines = ["## Ingest", "",
             f"{i['events_per_run']:,} events a run ({i['message_mix']['spans']:,} spans, "
             f"{i['message_mix']['logs']:,} logs, {i['message_mix']['mean_bytes']} bytes on average). Rate: "
             f"{i.get('rate_method', 'first to last refresh')}.", "",
             f"- ceiling (the worker's very documents, sent by its own `create_unstored` straight to the engine, "
             f"same templates): "
             f"**{_fmt(i['ceiling_eps'])} events/s** with bulks of {best['bulk_size']} from {best['processes']} "
             f"process(es) x {best['threads']} thread(s), the best of {len(i['ceiling_runs'])} runs; swept: "
             f"{i.get('ceiling_swept', 'n/a')}. Engine CPU there: "
             f"{_fmt(i.get('ceiling_engine_cpu_s_per_1000'), ' s')} per 1,000 events, the clients' "
             f"{_fmt(ceiling_run['cpu_s_per_1000'].get('clients'), ' s')}",
             f"- pipeline, backlog (Kafka -> bridge -> Celery -> engine), best settings "
             f"{i['best_settings']}: **{_fmt(i['pipeline_eps'])} events/s**, ratio **{_fmt(i['ratio_to_ceiling'])}** "
             f"(goal >= {RATIO_GOAL})",
             f"- pipeline, produced while running: **{_fmt(live['eps'])} events/s**, ratio "
             f"**{_fmt(i.get('live_ratio_to_ceiling'))}** (goal >= {RATIO_GOAL})",
             f"- our own CPU (bridge + worker) per 1,000 events: backlog **{_fmt(own['backlog'], ' s')}**, live "
             f"**{_fmt(own['live'], ' s')}** (goal <= {OWN_CPU_GOAL_S} s); engine: backlog "
             f"{_fmt(i['engine_cpu_s_per_1000']['backlog'], ' s')}, live "
             f"{_fmt(i['engine_cpu_s_per_1000']['live'], ' s')}",
             f"- freshness (produce -> searchable) at 1,000 events/s: p50 {_fmt(i['freshness_p50_ms'], ' ms')}, "
             f"**p99 {_fmt(i['freshness_p99_ms'], ' ms')}** (goal < {FRESHNESS_P99_GOAL_MS} ms); "
             f"{_legs(i.get('freshness_legs', {}), 'worker_start_to_seen')}",
             f"- freshness at 200 probes/s on top of {_fmt(fresh_half.get('background_rate'))} events/s (half "
             f"capacity): p50 {_fmt(fresh_half.get('p50_ms'), ' ms')}, p99 {_fmt(fresh_half.get('p99_ms'), ' ms')}; "
             f"{_legs(fresh_half.get('legs', {}), 'worker_start_to_seen')}",
             f"- how freshness is timed: {i['freshness']['idle'].get('method', 'n/a')}",
             f"- what the idle latency waits on: {_knobs(i.get('latency_settings', {}))}",
             "", "CPU seconds per 1,000 events (the stack is shared, so kafka/redis/engine include other load; "
                 "bench is this process: producing, polling):", "",
             "| run | own (bridge + worker) | bridge | worker | engine | kafka | redis | bench |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |",
             _cpu_row("best backlog", i["pipeline_best_run"]["cpu_s_per_1000"], own["backlog"]),
             _cpu_row("live", live["cpu_s_per_1000"], own["live"]),
             _cpu_row("ceiling (own = its clients)", ceiling_run["cpu_s_per_1000"],
                      ceiling_run["cpu_s_per_1000"].get("clients")),
             "", "| pipeline run | batch | in flight | worker procs | events/s | first-to-all | all searchable (s) | "
                 "own CPU/1000 | engine CPU/1000 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in [*i["pipeline_runs"], live]:
        lines.append(f"| {run['mode']} | {run['batch_size']} | {run['parallel']} | {run['concurrency']} | "
                     f"{_eps(run)} | {_fmt(run.get('eps_first_to_all'))} | {run['all_searchable_s']} | "
                     f"{_fmt(run.get('own_cpu_s_per_1000'))} | {_fmt(run['cpu_s_per_1000'].get('engine'))} |")
    lines += ["", "| ceiling run | stage | bulk size | processes | threads | events/s | first-to-all | acked/s | "
                  "engine CPU/1000 | clients CPU/1000 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in i["ceiling_runs"]:
        cpu = run.get("cpu_s_per_1000", {})
        lines.append(f"| {'**best**' if run is ceiling_run or run == ceiling_run else ''} | {run.get('stage', '')} | "
                     f"{run['bulk_size']} | {run.get('processes', 1)} | {run['threads']} | {_eps(run)} | "
                     f"{_fmt(run.get('eps_first_to_all'))} | {_fmt(run.get('acked_eps'))} | "
                     f"{_fmt(cpu.get('engine'))} | {_fmt(cpu.get('clients'))} |")
    if any(r.get("rate_basis", "steady") != "steady" for r in [*i["pipeline_runs"], live, *i["ceiling_runs"]]):
        lines += ["", "\\* overall rate (all documents over the time to the last one searchable): the run was too "
                      "short for the steady rate (three refreshes of each data stream, a second apart)."]
    profile = i.get("worker_profile", {})
    if "share_by_stage" in profile:
        lines += ["", f"Worker hot path (`index_batch` in one process, {_fmt(profile['one_process_eps'])} "
                      "events/s), share of CPU by stage:", ""]
        lines += [f"- {stage}: {share:.0%}" for stage, share in profile["share_by_stage"].items()]
    bridge = i.get("bridge_profile", {})
    if "share_by_stage" in bridge:
        lines += ["", f"Bridge (the real process under cProfile on {bridge['events']:,} events, its main thread's "
                      f"CPU: {_fmt(bridge['profiled_main_thread_cpu_s'], ' s')} profiled; top functions in "
                      f"`{bridge['top_functions']}`), share by stage:", ""]
        lines += [f"- {stage}: {share:.0%}" for stage, share in bridge["share_by_stage"].items()]
    elif "not_run" in bridge:
        lines += ["", f"Bridge profile: not run: {bridge['not_run']}"]
    return lines


def rss_table(r: dict[str, Any]) -> list[str]:
    """Peak RSS per process over the sections that ran it (MiB; worker: whole pool and its largest process)."""
    sources = [("ingest runs", lookup(r, "ingest.peak_rss_mb")), ("ceiling", lookup(r, "ingest.ceiling_peak_rss_mb")),
               ("error stream", lookup(r, "errors.peak_rss_mb")), ("otlp", lookup(r, "otlp.peak_rss_mb")),
               ("1 MB messages", lookup(r, "memory.peak_rss_mb"))]
    sources = [(name, peaks) for name, peaks in sources if peaks]
    if not sources:
        return []
    names = [n for n in RSS_ORDER if any(n in peaks for _, peaks in sources)]
    lines = ["| process | " + " | ".join(name for name, _ in sources) + " |",
             "| --- |" + " --- |" * len(sources)]
    for name in names:
        cells = []
        for _, peaks in sources:
            peak = peaks.get(name)
            if not peak:
                cells.append("")
            elif name == "worker" or peak["sum"] != peak["max_single"]:
                cells.append(f"{_fmt(peak['sum'])} (largest {_fmt(peak['max_single'])})")
            else:
                cells.append(_fmt(peak["sum"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _memory_lines(r: dict[str, Any]) -> list[str]:
    lines = ["## Memory", "", "Peak RSS (MiB) of every process while it ran, sampled every 0.2 s (a tree's figure "
             "sums its processes, so pages Celery's forked pool shares count once per process; the engine, Kafka "
             "and Redis are the shared stack's processes):", "", *rss_table(r)]
    mem = r.get("memory", {})
    if why := _not_run(mem):
        return [*lines, "", f"Bridge memory bound: not run: {why}"]
    bound = mem["bound"]
    lines += ["", f"Bridge memory with {mem['messages']:,} messages of {mem['message_bytes']:,} bytes "
                  f"({mem['gb_total']} GB, produced faster than the pipeline stores them, so every batch is in "
                  f"flight and partitions pause; {mem['mb_per_s']} MB/s end to end), settings {mem['settings']}:", "",
              f"- bound: {bound['formula']} = **{_fmt(bound['mib'])} MiB** (B = {bound['B_bytes'] / 2**20:g} MiB, "
              "the largest batch)",
              f"- measured: peak **{_fmt(mem['peak_mib'])} MiB** (kernel high-water mark {_fmt(mem['peak_hwm_mib'])}"
              f" MiB, largest 0.2 s sample {_fmt(mem['peak_sampled_mib'])} MiB), baseline {_fmt(mem['baseline_mib'])} "
              f"MiB once assigned",
              f"- **the bound {'holds' if mem['holds'] else 'does NOT hold'}**: "
              f"{_fmt(abs(mem['headroom_mib']))} MiB {'below' if mem['holds'] else 'above'} it; its largest term: "
              f"{bound['largest_term']}",
              f"- batches the bridge reported (throughput line every second): at most "
              f"{_fmt(mem['batches_seen'].get('max_in_flight'))} in flight, "
              f"{_fmt(mem['batches_seen'].get('max_ready'))} waiting", "",
              "| term of the bound | MiB |", "| --- | --- |"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in bound["terms_mib"].items()]
    return lines


def _compare_lines(c: dict[str, Any]) -> list[str]:
    if why := _not_run(c):
        return ["## Before / after", "", f"not run: {why}"]
    before, after, ratio = c["before"], c["after"], c["ratios"]
    changes = c.get("changes", [])
    lines = ["## Before / after", "",
             f"The pipeline (bridge, worker, index templates) of {c['before_ref']} ({c['before_commit']}) and of the "
             f"working tree ({c['after_commit']}{', with uncommitted changes' if c.get('after_dirty') else ''}), "
             f"in turn {c.get('repeats', 1)} time(s) each (medians below), the same {c['events']:,} messages "
             f"(backlog), settings {c['config']}. "
             f"{len(changes)} commit(s) in between touch the product"
             + (": " + "; ".join(f"`{x}`" for x in changes[:12]) + (" ..." if len(changes) > 12 else "")
                if changes else "") + ".", "",
             "| | before | after | after / before |", "| --- | --- | --- | --- |",
             f"| events/s | {_fmt(before['eps'])} | {_fmt(after['eps'])} | {_fmt(ratio['eps'])} |",
             f"| own CPU (bridge + worker) s per 1,000 events | {_fmt(before['own_cpu_s_per_1000'])} | "
             f"{_fmt(after['own_cpu_s_per_1000'])} | {_fmt(ratio['own_cpu_s_per_1000'])} |",
             f"| engine CPU s per 1,000 events | {_fmt(before['cpu_s_per_1000'].get('engine'))} | "
             f"{_fmt(after['cpu_s_per_1000'].get('engine'))} | {_fmt(ratio['engine_cpu_s_per_1000'])} |",
             f"| bridge / worker CPU s per 1,000 | {_fmt(before['cpu_s_per_1000'].get('bridge'))} / "
             f"{_fmt(before['cpu_s_per_1000'].get('worker'))} | {_fmt(after['cpu_s_per_1000'].get('bridge'))} / "
             f"{_fmt(after['cpu_s_per_1000'].get('worker'))} | |",
             f"| stored exactly | {_fmt(before['stored_exactly'])} | {_fmt(after['stored_exactly'])} | |"]
    for side, figures in (("before", before), ("after", after)):
        runs = figures.get("runs") or []
        if runs:
            lines.append(f"\n{side}, each run (events/s, own CPU s per 1,000): "
                         + "; ".join(f"{_fmt(run['eps'])}, {_fmt(run['own_cpu_s_per_1000'])}" for run in runs))
    return lines


def _storage_lines(st: dict[str, Any]) -> list[str]:
    if why := _not_run(st):
        return ["## Index templates before / after", "", f"not run: {why}"]
    m, ratio, bulk = st["medians"], st["engine_cpu_ratio"], st["bulk"]
    lines = ["## Index templates before / after", "",
             f"The worker's very documents ({st['events']:,}) bulk-written straight to the engine (bulks of "
             f"{bulk['size']} from {bulk['processes']} processes, as for the ceiling: no pipeline process shares the "
             f"cores), into the spans' and logs' templates of {st['before_ref']} ({st['before_commit']}, installed by "
             f"its own code), today's with the refresh interval of then (1,000 ms: the mapping alone, "
             f"docs/storage.md), and today's as configured (refresh {st['refresh_ms_today']} ms), in turn, "
             f"{st['repeats']} times each; medians.", "",
             "| | events/s | engine CPU s per 1,000 events | engine CPU / before |", "| --- | --- | --- | --- |"]
    for name, label in (("before", f"before ({st['before_ref']})"), ("mapping", "mapping alone, refresh 1,000 ms"),
                        ("today", f"today, refresh {st['refresh_ms_today']} ms")):
        lines.append(f"| {label} | {_fmt(m[name]['eps'])} | {_fmt(m[name]['engine_cpu_s_per_1000'])} | "
                     f"{_fmt(ratio.get(name)) if name != 'before' else '1'} |")
    every = "; ".join(f"{name}: " + ", ".join(_fmt(r["engine_cpu_s_per_1000"]) for r in runs)
                      for name, runs in st["runs"].items())
    lines += ["", f"Every run's engine CPU per 1,000 events, in order: {every}."]
    return lines


def _probes(run: dict[str, Any]) -> str:
    return (f"{_fmt(run.get('probes'))} probes at {_fmt(run.get('probe_rate'))}/s, each received by "
            f"{_fmt(run.get('sockets'))} sockets")


def _error_lines(e: dict[str, Any]) -> list[str]:
    if why := _not_run(e):
        return ["## Error stream", "", f"not run: {why}"]
    under = e.get("under_load", {})
    lines = ["## Error stream (produce -> WebSocket receive)", "",
             f"- idle: p50 {_fmt(e.get('p50_ms'), ' ms')}, **p99 {_fmt(e.get('p99_ms'), ' ms')}** (goal < "
             f"{ERRORS_IDLE_P99_GOAL_MS} ms); {_legs(e.get('idle_legs', {}), 'worker_start_to_socket')}",
             f"- under ingest load of {_fmt(e.get('load_rate'))} events/s ({e.get('load_basis', 'n/a')}; "
             f"produced at {_fmt(under.get('load_rate_achieved'))}/s): p50 {_fmt(e.get('p50_ms_under_load'), ' ms')}, "
             f"**p99 {_fmt(e.get('p99_ms_under_load'), ' ms')}** (goal < {ERRORS_LOADED_P99_GOAL_MS} ms at half "
             f"capacity; {_probes(under)}); {_legs(under.get('legs', {}), 'worker_start_to_socket')}",
             "- slowest idle probes, produce -> worker start: "
             + (", ".join(f"#{p['probe']} {_fmt(p['ms'], ' ms')}" for p in e.get("idle", {}).get(
                 "slowest_to_worker_start", [])) or "n/a")
             + f"; timed after {e.get('warmup', 'n/a')}",
             f"- what the idle path waits on: {_knobs(e.get('latency_settings', {}))}"]
    if half := e.get("under_half_backlog_capacity"):
        lines.insert(-1, f"- under half of the backlog capacity instead ({_fmt(half.get('load_rate'))} events/s, "
                         f"produced at {_fmt(half.get('load_rate_achieved'))}/s), for comparison: p50 "
                         f"{_fmt(half.get('p50_ms'), ' ms')}, p99 {_fmt(half.get('p99_ms'), ' ms')}; "
                         f"{_legs(half.get('legs', {}), 'worker_start_to_socket')}")
    for step in e.get("sockets", []):
        lines.append(f"- {step['sockets']} sockets: p99 {_fmt(step.get('p99_ms'), ' ms')}, "
                     f"received {step.get('received')}/{step.get('expected')}")
    lines.append(f"- sockets one `ws` process holds with p99 under 1 s: {_fmt(e.get('sockets_p99_under_1s'))}")
    return lines


# --- the README's performance table ---------------------------------------------------------------------
def _met(ok: bool | None) -> str:
    return "" if ok is None else (" (met)" if ok else " (not met)")


def _reduced(before: list[float | None], after: list[float | None]) -> bool | None:
    """Lower beyond the noise: every run after below every run before (a lower median alone was often noise
    here: runs of one side spread over 20 %)."""
    b, a = [v for v in before if v is not None], [v for v in after if v is not None]
    return max(a) < min(b) if a and b else None


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _at_most(value: float | None, goal: float) -> bool | None:
    return None if value is None else value <= goal


def _below(value: float | None, goal: float) -> bool | None:
    return None if value is None else value < goal


def perf_table(r: dict[str, Any]) -> str:
    """figure | today | goal | command, from one run (to paste into the README)."""
    i, e, mem, c = (r.get(k, {}) for k in ("ingest", "errors", "memory", "compare"))
    rows: list[tuple[str, str, str]] = []
    if not _not_run(i):
        ceiling = i["ceiling_best"]
        rows += [
            ("ingest ceiling (direct bulk, best of the sweep)",
             f"{_fmt(i['ceiling_eps'])} events/s (bulk {ceiling['bulk_size']}, {ceiling['processes']} process(es) x "
             f"{ceiling['threads']} thread(s))", "a true ceiling: bulk sizes x 1-4 threads / processes"),
            ("ingest / ceiling, backlog", f"{_fmt(i['ratio_to_ceiling'])} ({_fmt(i['pipeline_eps'])} events/s)"
             + _met(_at_least(i["ratio_to_ceiling"], RATIO_GOAL)), f">= {RATIO_GOAL}"),
            ("ingest / ceiling, live", f"{_fmt(i['live_ratio_to_ceiling'])} ({_fmt(i['pipeline_live']['eps'])} "
             "events/s)" + _met(_at_least(i["live_ratio_to_ceiling"], RATIO_GOAL)), f">= {RATIO_GOAL}"),
            ("own CPU per 1,000 events (bridge + worker), backlog / live",
             f"{_fmt(i['own_cpu_s_per_1000']['backlog'])} s / {_fmt(i['own_cpu_s_per_1000']['live'])} s"
             + _met(_at_most(max(i["own_cpu_s_per_1000"]["backlog"], i["own_cpu_s_per_1000"]["live"]),
                             OWN_CPU_GOAL_S)), f"<= {OWN_CPU_GOAL_S} s"),
        ]
        engine = i["engine_cpu_s_per_1000"]["backlog"]
        before = lookup(c, "before.cpu_s_per_1000.engine") if not _not_run(c) else None
        after = lookup(c, "after.cpu_s_per_1000.engine") if not _not_run(c) else None
        versus = (f"; side by side: {_fmt(before)} s at {c['before_ref']} -> {_fmt(after)} s now"
                  + _met(_reduced([run["cpu_s_per_1000"].get("engine") for run in c["before"].get("runs", [])],
                                  [run["cpu_s_per_1000"].get("engine") for run in c["after"].get("runs", [])]))
                  ) if before else ""
        st = r.get("storage", {})
        templates = (f"; templates alone (direct bulk, {st['repeats']} runs each in turn, medians): "
                     f"{_fmt(st['medians']['before']['engine_cpu_s_per_1000'])} s at {st['before_ref']} -> "
                     f"{_fmt(st['medians']['mapping']['engine_cpu_s_per_1000'])} s (mapping, refresh 1 s, "
                     f"x{_fmt(st['engine_cpu_ratio']['mapping'])}) -> "
                     f"{_fmt(st['medians']['today']['engine_cpu_s_per_1000'])} s (refresh "
                     f"{st['refresh_ms_today']} ms, x{_fmt(st['engine_cpu_ratio']['today'])})"
                     + _met(_reduced([run["engine_cpu_s_per_1000"] for run in st["runs"]["before"]],
                                     [run["engine_cpu_s_per_1000"] for run in st["runs"]["today"]]))
                     ) if st and not _not_run(st) else ""
        rows.append(("engine CPU per 1,000 events", f"{_fmt(engine)} s (backlog){versus}{templates}",
                     f"reduced vs {c.get('before_ref', 'before')}"))
        rows.append(("freshness p99 at 1,000 events/s", _fmt(i["freshness_p99_ms"], " ms")
                     + _met(_below(i["freshness_p99_ms"], FRESHNESS_P99_GOAL_MS)), f"< {FRESHNESS_P99_GOAL_MS:,} ms"))
    if not _not_run(e):
        half = e.get("p99_ms_half_capacity")
        rows += [("ERROR log -> WebSocket p99, idle", _fmt(e.get("p99_ms"), " ms")
                  + _met(_below(e.get("p99_ms"), ERRORS_IDLE_P99_GOAL_MS)), f"< {ERRORS_IDLE_P99_GOAL_MS} ms"),
                 (f"ERROR log -> WebSocket p99 at 50% capacity ({_fmt(e.get('load_rate'))} events/s)",
                  (_fmt(half, " ms") + _met(_below(half, ERRORS_LOADED_P99_GOAL_MS))) if half is not None else
                  f"not measured at half capacity ({_fmt(e.get('p99_ms_under_load'), ' ms')} at a fixed load)",
                  f"< {ERRORS_LOADED_P99_GOAL_MS:,} ms")]
    peaks = _peak_cells(r)
    if peaks:
        rows.append(("peak RSS per process (MiB)", peaks, "reported"))
    if not _not_run(mem):
        rows.append(("bridge memory with 1 MB messages", f"peak {_fmt(mem['peak_mib'])} MiB, bound "
                     f"{_fmt(mem['bound']['mib'])} MiB from its settings: "
                     + ("holds" if mem["holds"] else "does not hold"), "bounded by its settings"))
    lines = [f"Measured {r['generated_at']} on {r['machine']['cores_logical']} cores, commit "
             f"{r['versions'].get('git_commit')}, one `make bench` run.", "",
             "| figure | today | goal | command |", "| --- | --- | --- | --- |"]
    lines += [f"| {figure} | {today} | {goal} | `make bench` |" for figure, today, goal in rows]
    return "\n".join(lines) + "\n"


def _peak_cells(r: dict[str, Any]) -> str:
    merged: dict[str, dict[str, float]] = {}
    for path in ("ingest.peak_rss_mb", "errors.peak_rss_mb", "otlp.peak_rss_mb"):
        for name, peak in (lookup(r, path) or {}).items():
            mine = merged.setdefault(name, {"sum": 0.0, "max_single": 0.0})
            mine["sum"] = max(mine["sum"], peak["sum"])
            mine["max_single"] = max(mine["max_single"], peak["max_single"])
    cells = []
    for name in RSS_ORDER:
        if name in merged and name != "bench":
            peak = merged[name]
            extra = f" (largest {_fmt(peak['max_single'])})" if name == "worker" else ""
            cells.append(f"{name} {_fmt(peak['sum'])}{extra}")
    return ", ".join(cells)


def _query_lines(q: dict[str, Any]) -> list[str]:
    if why := _not_run(q):
        return ["## Queries", "", f"not run: {why}"]
    lines = ["## Queries (metrics route)", "", q.get("dataset_text", ""), "",
             "| range | mode | p50 ms | p95 ms | n |", "| --- | --- | --- | --- | --- |"]
    for row in q.get("rows", []):
        lines.append(f"| {row['range']} | {row['mode']} | {_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} | "
                     f"{row['n']} |")
    lines += ["", f"`query.speedup_24h` (raw / rollup, cold p50): {_fmt(q.get('speedup_24h'))}"]
    return lines


def _dependency_lines(d: dict[str, Any]) -> list[str]:
    if why := _not_run(d):
        return ["## Service map", "", f"not run: {why}"]
    tiers = ", ".join((d.get("sources") or {}).get("rollup", {}).get("tiers", []))
    return ["## Service map (`/query/dependencies`, 7 days)", "", d.get("dataset_text", ""), "",
            f"Read from rollups only (tiers {tiers}; no raw part). Cold p50 {_fmt(d.get('p50_ms_7d_cold'))} ms "
            f"(p95 {_fmt(d.get('p95_ms_7d_cold'))} ms), cached p50 {_fmt(d.get('p50_ms_7d_cached'))} ms; "
            f"n = {d.get('n')}."]


def _alert_lines(a: dict[str, Any]) -> list[str]:
    if why := _not_run(a):
        return ["## Alert rules", "", f"not run: {why}"]
    data = a.get("dataset", {})
    lines = [f"## Alert rules ({a.get('rules')} rules for {a.get('services')} services, one evaluation)", "",
             f"Data: {_fmt(data.get('spans'))} requests and {_fmt(data.get('error_logs'))} error logs of the last "
             "15 minutes.", "", "| evaluation | wall s | CPU s (evaluator) | CPU s (engine) | changes |",
             "| --- | --- | --- | --- | --- |"]
    for run in a.get("evaluations", []):
        lines.append(f"| {run['n']} | {_fmt(run['wall_s'])} | {_fmt(run['cpu_s'])} | {_fmt(run['engine_cpu_s'])} | "
                     f"{run['changes']} |")
    lines += ["", f"Worst steady evaluation: {_fmt(a.get('cpu_s_per_evaluation'))} s CPU in the evaluator + "
                  f"{_fmt(a.get('engine_cpu_s_per_evaluation'))} s in the engine, "
                  f"{_fmt(a.get('wall_s_per_evaluation'))} s wall; goal: under {_fmt(a.get('goal_cpu_s'))} s of one "
                  "core per minute "
                  f"({'met' if a.get('under_goal') else 'NOT met'}).", "", a.get("note", "")]
    return lines


def _otlp_lines(o: dict[str, Any]) -> list[str]:
    if why := _not_run(o):
        return ["## OTLP", "", f"not run: {why}"]
    http = o.get("v1_traces_load") or o["otlp_proto"]["http"]
    lines = ["## OTLP (the same spans as JSON and as OTLP protobuf, side by side)", "",
             f"{o['spans']:,} spans; {o['mean_bytes_per_span']['json']} bytes a span as JSON, "
             f"{o['mean_bytes_per_span']['otlp_proto']} as OTLP protobuf in requests of {o['batch_spans']}.", "",
             f"- JSON path (apm.spans -> bridge -> worker): **{_fmt(o['eps_json'])} spans/s**",
             f"- OTLP path (POST /v1/traces -> otlp -> otlp_spans -> bridge -> worker): "
             f"**{_fmt(o['eps_otlp'])} spans/s** (pipeline from a full topic)",
             f"- `/v1/traces` alone, {http['requests']:,} requests from {http['clients']} clients, "
             f"{o['batch_spans']} spans a request: **{_fmt(http['requests_per_s'])} requests/s**, p50 "
             f"{_fmt(http['p50_ms'], ' ms')}, p99 {_fmt(http['p99_ms'], ' ms')}, receiver CPU "
             f"{_fmt(http.get('receiver_cpu_ms_per_request'), ' ms')} a request",
             f"- worker CPU per span, OTLP / JSON: **{_fmt(o['worker_cpu_ratio_otlp_to_json'])}**", "",
             "| CPU s per 1,000 spans | otlp | bridge | worker |", "| --- | --- | --- | --- |"]
    for name, run in (("JSON", o["json"]), ("OTLP protobuf", o["otlp_proto"])):
        cpu = run["cpu_s_per_1000"]
        lines.append(f"| {name} | {_fmt(cpu.get('otlp'))} | {_fmt(cpu.get('bridge'))} | {_fmt(cpu.get('worker'))} |")
    return lines


def _dashboard_lines(d: dict[str, Any]) -> list[str]:
    if why := _not_run(d):
        return ["## Dashboard (in Chromium)", "", f"not run: {why}"]
    data, pages, chart = d["dataset"], d["services_page"], d["chart_7d"]
    lines = ["## Dashboard (in Chromium)", "",
             f"{data['services']} services, {data['raw_spans']:,} raw spans, {data['rollup_documents']:,} rollup "
             "documents. Times from navigation start, medians of "
             f"{pages['cold']['n']} page loads (Performance API).", "",
             "| services page | first contentful paint ms | table of every service ms | sparklines done ms | rows |",
             "| --- | --- | --- | --- | --- |"]
    for mode in ("cold", "cached"):
        p = pages[mode]
        lines.append(f"| {mode} | {_fmt(p['fcp'])} | {_fmt(p['table'])} | {_fmt(p['sparks'])} | {p['rows']} |")
    lines += ["", f"7-day chart at one-minute buckets ({chart['points']:,} points, three charts, cold cache): "
                  f"drawn {_fmt(chart['ready_ms_p50'], ' ms')} after navigation start (metrics answer "
                  f"{_fmt(chart['api_ms_p50'], ' ms')}, drawing the three charts {_fmt(chart['draw_ms_p50'], ' ms')}); "
                  f"longest main-thread task {_fmt(chart['longest_task_ms_max'], ' ms')}, total blocking time "
                  f"{_fmt(chart['total_blocking_ms_p50'], ' ms')}; {chart['hover_moves']} cursor moves over the "
                  f"chart in {_fmt(chart['hover_ms_p50'], ' ms')}, longest task while hovering "
                  f"{_fmt(chart['hover_longest_task_ms_max'], ' ms') if chart['hover_longest_task_ms_max'] else 'none'}"
                  " (a long task is one over 50 ms)."]
    return lines


# --- charts -------------------------------------------------------------------------------------------
def _charts(r: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    made = []
    for chart in (_throughput_chart, _sweep_chart, _cpu_chart, _query_chart, _latency_chart, _memory_chart):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            path = chart(r, out)
            if path:
                made.append(str(path.name))
    return made


def _caption(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    return (f"{m['cores_logical']} cores, {m['memory_gib']} GiB, {v.get('engine')}, Kafka {v.get('kafka')}, "
            f"{r['generated_at']}; reproduce: make bench")


def _throughput_chart(r: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    i = r["ingest"]
    if _not_run(i):
        return None
    best = i["ceiling_best"]
    labels = [f"ceiling\n(bulk {best['bulk_size']},\n{best['processes']} proc x {best['threads']} thr)",
              "pipeline\n(backlog)", "pipeline\n(live)"]
    values = [i["ceiling_eps"], i["pipeline_eps"], i["pipeline_live"]["eps"]]
    ba = r.get("compare", {})
    if "ratios" in ba:
        labels += [f"pipeline, default\nsettings, before\n({ba['before_ref']})", "pipeline, default\n"
                   "settings, after"]
        values += [ba["before"]["eps"], ba["after"]["eps"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.bar(labels, [v or 0 for v in values], color=["#888888", "#2a7ab9", "#5fa2d6", "#d08c60", "#2a7ab9"])
    for bar, value in zip(bars, values, strict=True):
        ratio = f"\n{value / i['ceiling_eps']:.2f}x ceiling" if value and i["ceiling_eps"] else ""
        ax.annotate(f"{_fmt(value)}/s{ratio}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("events/s (first to all searchable)")
    ax.set_title("Ingest throughput against the ceiling of this machine")
    fig.text(0.01, 0.01, _caption(r), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "ingest_throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sweep_chart(r: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    i = r["ingest"]
    if _not_run(i):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    default = i["pipeline_default"]
    runs = [x for x in i["pipeline_runs"] if x["parallel"] == default["parallel"]
            and x["concurrency"] == default["concurrency"]]
    axes[0].plot([x["batch_size"] for x in runs], [x["eps"] or 0 for x in runs], "o-", label="pipeline")
    ceil = [x for x in i["ceiling_runs"] if x.get("stage") == "sizes"]
    axes[0].plot([x["bulk_size"] for x in ceil], [x["eps"] or 0 for x in ceil], "s--", color="#888888",
                 label=f"ceiling ({ceil[0]['processes']} proc x {ceil[0]['threads']} thr)" if ceil else "ceiling")
    axes[0].set_xscale("log")
    sizes = sorted({x["batch_size"] for x in runs} | {x["bulk_size"] for x in ceil})
    axes[0].set_xticks(sizes, [str(x) for x in sizes])
    axes[0].minorticks_off()
    axes[0].set_xlabel("documents per batch / bulk")
    axes[0].set_ylabel("events/s")
    axes[0].legend()
    axes[0].set_title("batch size")
    others = [x for x in i["pipeline_runs"] if x not in runs]
    axes[1].bar([f"in flight {x['parallel']}\nprocs {x['concurrency']}" for x in others],
                [x["eps"] or 0 for x in others])
    axes[1].set_title(f"in-flight limit and worker processes (batch {i['best_settings']['BULK_BATCH_SIZE']})")
    fig.text(0.01, 0.01, _caption(r), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "ingest_sweep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cpu_chart(r: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    i = r["ingest"]
    if _not_run(i):
        return None
    cpu = i["cpu_s_per_1000_events"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(cpu), list(cpu.values()), color="#2a7ab9")
    ax.set_xlabel("CPU seconds per 1,000 events")
    ax.set_title("Where the CPU goes (best backlog run)")
    fig.text(0.01, 0.01, _caption(r), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = out / "ingest_cpu.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _query_chart(r: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    q = r["query"]
    if _not_run(q) or not q.get("rows"):
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    modes = sorted({row["mode"] for row in q["rows"]})
    ranges = list(dict.fromkeys(row["range"] for row in q["rows"]))
    width = 0.8 / len(modes)
    for n, mode in enumerate(modes):
        values = [next((row["p50_ms"] or 0 for row in q["rows"] if row["range"] == rng and row["mode"] == mode), 0)
                  for rng in ranges]
        ax.bar([x + n * width for x in range(len(ranges))], values, width, label=mode)
    ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(ranges))], ranges)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_title("Metrics route latency by range")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, _caption(r), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "query_latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency_chart(r: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    rows = []
    i, e = r.get("ingest", {}), r.get("errors", {})
    if not _not_run(i):
        for name, run in i.get("freshness", {}).items():
            rows.append((f"freshness\n{name}", run.get("p50_ms"), run.get("p99_ms")))
    if not _not_run(e):
        rows.append(("error stream\nidle", e.get("p50_ms"), e.get("p99_ms")))
        rows.append(("error stream\nunder load", e.get("p50_ms_under_load"), e.get("p99_ms_under_load")))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [row[1] or 0 for row in rows], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [row[2] or 0 for row in rows], 0.4, label="p99")
    ax.set_xticks(list(xs), [row[0] for row in rows])
    ax.set_ylabel("ms")
    ax.set_title("Produce -> searchable / produce -> on screen")
    ax.legend()
    fig.text(0.01, 0.01, _caption(r), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _memory_chart(r: dict[str, Any], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    mem = r.get("memory", {})
    if _not_run(mem) or not mem.get("rss_series_mib"):
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t for t, _ in mem["rss_series_mib"]], [v for _, v in mem["rss_series_mib"]], label="bridge RSS")
    ax.axhline(mem["bound"]["mib"], color="#c0392b", linestyle="--", label="bound from its settings")
    ax.axhline(mem["baseline_mib"], color="#888888", linestyle=":", label="baseline (assigned, idle)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Bridge memory, {mem['messages']:,} messages of {mem['message_bytes']:,} bytes")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, _caption(r), fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "bridge_memory.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """summary.md and perf_table.md again from a directory's latest.json (charts are left as they are)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(__file__).resolve().parent / "results"
    results = orjson.loads((out / "latest.json").read_bytes())
    write_texts(results, out)
    print(f"wrote {out / 'summary.md'} and {out / 'perf_table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
