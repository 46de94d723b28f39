"""latest.json, summary.md and the PNG charts, from one run's results."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import orjson

# The figures the issue asks for, as dotted paths into the results (also written flat under "figures").
FIGURES = (
    "ingest.ratio_to_ceiling", "ingest.pipeline_eps", "ingest.ceiling_eps", "ingest.eps_per_core",
    "ingest.freshness_p50_ms", "ingest.freshness_p99_ms", "ingest.live_ratio_to_ceiling",
    "query.p50_ms_1h_cold", "query.p50_ms_24h_cold", "query.p50_ms_7d_cold", "query.p95_ms_7d_cold",
    "query.p50_ms_7d_cached", "query.p95_ms_7d_cached", "query.speedup_24h",
    "errors.p50_ms", "errors.p99_ms", "errors.p99_ms_under_load", "errors.sockets_p99_under_1s",
    "otlp.eps_json", "otlp.eps_otlp", "otlp.worker_cpu_ratio_otlp_to_json", "otlp.v1_traces_requests_per_s",
    "otlp.v1_traces_p99_ms",
    "dashboard.services_first_paint_ms_cold", "dashboard.services_first_paint_ms_cached",
    "dashboard.chart_7d_longest_task_ms",
    "alerts.cpu_s_per_evaluation", "alerts.engine_cpu_s_per_evaluation", "alerts.wall_s_per_evaluation",
)


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
    (out / "summary.md").write_text(summary(results))


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text}{unit}"


def _not_run(section: dict[str, Any]) -> str | None:
    return section.get("not_run") if isinstance(section, dict) else "missing"


def summary(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    lines = [
        "# Benchmark summary",
        "",
        f"Run {r['generated_at']} on {m['cores_logical']} cores ({m['cpu_model']}), {m['memory_gib']} GiB; "
        f"{v.get('engine')}, Kafka {v.get('kafka')}, Redis {v.get('redis')}, Python {v.get('python')}; "
        f"commit {v.get('git_commit')}{' (dirty)' if v.get('git_dirty') else ''}. "
        f"Load average at start: {m['load_average_at_start']}.",
        "",
        f"Reproduce: `{r['command']}`. {r['note']}",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    for path in FIGURES:
        lines.append(f"| `{path}` | {_fmt(r['figures'].get(path))} |")
    lines += ["", *_ingest_lines(r.get("ingest", {})), "", *_query_lines(r.get("query", {})), "",
              *_error_lines(r.get("errors", {})), "", *_otlp_lines(r.get("otlp", {})), "",
              *_dashboard_lines(r.get("dashboard", {})), "", *_alert_lines(r.get("alerts", {}))]
    if r.get("charts"):
        lines += ["", "Charts: " + ", ".join(f"[{Path(c).name}]({Path(c).name})" for c in r["charts"])]
    return "\n".join(lines) + "\n"


def _ingest_lines(i: dict[str, Any]) -> list[str]:
    if why := _not_run(i):
        return ["## Ingest", "", f"not run: {why}"]
    lines = ["## Ingest", "",
             f"{i['events_per_run']:,} events a run ({i['message_mix']['spans']:,} spans, "
             f"{i['message_mix']['logs']:,} logs, {i['message_mix']['mean_bytes']} bytes on average). Rates are "
             "taken from the first refresh that shows documents to the one that shows them all "
             "(polling `_count`, no forced refresh).", "",
             f"- ceiling (one Python process, `create_many`, bulk {i['ceiling_best']['bulk_size']}, "
             f"{i['ceiling_best']['threads']} thread(s)): **{_fmt(i['ceiling_eps'])} events/s**",
             f"- pipeline, backlog (Kafka -> bridge -> Celery -> engine), best settings "
             f"{i['best_settings']}: **{_fmt(i['pipeline_eps'])} events/s**, ratio **{_fmt(i['ratio_to_ceiling'])}**",
             f"- pipeline, produced while running: {_fmt(i['pipeline_live']['eps'])} events/s, ratio "
             f"{_fmt(i.get('live_ratio_to_ceiling'))}",
             f"- freshness (produce -> searchable) at 1,000 events/s: p50 {_fmt(i['freshness_p50_ms'], ' ms')}, "
             f"p99 {_fmt(i['freshness_p99_ms'], ' ms')}; at half capacity: p50 "
             f"{_fmt(i['freshness']['half_capacity'].get('p50_ms'), ' ms')}, p99 "
             f"{_fmt(i['freshness']['half_capacity'].get('p99_ms'), ' ms')}",
             "", "CPU seconds per 1,000 events (best backlog run; the stack is shared, so kafka/redis/engine "
                 "include other load):", "",
             "| " + " | ".join(i["cpu_s_per_1000_events"]) + " |",
             "|" + " --- |" * len(i["cpu_s_per_1000_events"]),
             "| " + " | ".join(_fmt(x) for x in i["cpu_s_per_1000_events"].values()) + " |", "",
             "| pipeline run | batch | in flight | worker procs | events/s | all searchable (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for run in i["pipeline_runs"]:
        lines.append(f"| {run['mode']} | {run['batch_size']} | {run['parallel']} | {run['concurrency']} | "
                     f"{_fmt(run['eps'])} | {run['all_searchable_s']} |")
    lines += ["", "| ceiling run | bulk size | threads | events/s |", "| --- | --- | --- | --- |"]
    for run in i["ceiling_runs"]:
        lines.append(f"| | {run['bulk_size']} | {run['threads']} | {_fmt(run['eps'])} |")
    profile = i.get("worker_profile", {})
    if "share_by_stage" in profile:
        lines += ["", f"Worker hot path (`index_batch` in one process, {_fmt(profile['one_process_eps'])} "
                      "events/s), share of CPU by stage:", ""]
        lines += [f"- {stage}: {share:.0%}" for stage, share in profile["share_by_stage"].items()]
    ba = i.get("before_after", {})
    if "ratio" in ba:
        lines += ["", f"Before/after ({ba['what']}; throughput line every "
                      f"{ba.get('stream_throughput_interval_seconds', 10)} s): {_fmt(ba['before']['eps'])} -> "
                      f"{_fmt(ba['after']['eps'])} "
                      f"events/s steady (x{ba['ratio']}), {_fmt(ba['before']['overall_eps'])} -> "
                      f"{_fmt(ba['after']['overall_eps'])} events/s overall (x{ba['overall_ratio']})."]
    return lines


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


def _error_lines(e: dict[str, Any]) -> list[str]:
    if why := _not_run(e):
        return ["## Error stream", "", f"not run: {why}"]
    lines = ["## Error stream (produce -> WebSocket receive)", "",
             f"- idle: p50 {_fmt(e.get('p50_ms'), ' ms')}, p99 {_fmt(e.get('p99_ms'), ' ms')}",
             f"- under ingest load ({_fmt(e.get('load_rate'))} events/s): "
             f"p50 {_fmt(e.get('p50_ms_under_load'), ' ms')}, p99 {_fmt(e.get('p99_ms_under_load'), ' ms')}"]
    for step in e.get("sockets", []):
        lines.append(f"- {step['sockets']} sockets: p99 {_fmt(step.get('p99_ms'), ' ms')}, "
                     f"received {step.get('received')}/{step.get('expected')}")
    lines.append(f"- sockets one `ws` process holds with p99 under 1 s: {_fmt(e.get('sockets_p99_under_1s'))}")
    return lines


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
    for chart in (_throughput_chart, _sweep_chart, _cpu_chart, _query_chart, _latency_chart):
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
    labels = ["ceiling\n(one process,\nbulk writes)", "pipeline\n(backlog)", "pipeline\n(live)"]
    values = [i["ceiling_eps"], i["pipeline_eps"], i["pipeline_live"]["eps"]]
    ba = i.get("before_after", {})
    if "ratio" in ba:
        labels += [f"pipeline, default\nsettings, bridge\nbefore ({ba['before_ref']})", "pipeline, default\n"
                   "settings, bridge\nafter"]
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
    ceil = [x for x in i["ceiling_runs"] if x["threads"] == 1]
    axes[0].plot([x["bulk_size"] for x in ceil], [x["eps"] or 0 for x in ceil], "s--", color="#888888",
                 label="ceiling (1 thread)")
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
