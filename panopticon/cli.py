"""Commands for developers and operators, run through Flask's CLI (`flask send-sample`, ...)."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from panopticon.settings import Settings


def _settings() -> Settings:
    settings: Settings = current_app.config["PANOPTICON_SETTINGS"]
    return settings


def _duration_ms(text: str) -> float:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    raise click.BadParameter(f"expected a duration such as 500ms, 30s, 15m, 6h or 7d, got {text!r}")


@click.command("send-sample")
@click.option("--count", default=1000, show_default=True, help="Traces to send (each is several spans and logs).")
@click.option("--rate", default=0.0, show_default=True, help="Messages per second; 0 sends as fast as possible.")
@click.option("--seed", default=None, type=int, help="Random seed, for traffic that can be reproduced.")
@click.option("--kind", type=click.Choice(["log", "span", "both"]), default="both", show_default=True)
@click.option("--error-ratio", default=0.05, show_default=True, help="Share of server spans that fail.")
@click.option("--latency-sigma", default=0.6, show_default=True, help="Spread of the log-normal latencies.")
@click.option("--spread", default="0s", show_default=True,
              help="Spread trace start times over this span of time ending now (e.g. 6h).")
@click.option("--forever", is_flag=True, help="Keep sending batches of --count until stopped (make run).")
def send_sample(count: int, rate: float, seed: int | None, kind: str, error_ratio: float, latency_sigma: float,
                spread: str, forever: bool) -> None:
    """Produce realistic sample traffic to the log and span topics."""
    import time

    from panopticon import sample
    from panopticon.kafka import ensure_topics

    settings = _settings()
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic])
    spread_ms = _duration_ms(spread)
    round_ = 0
    while True:
        start = time.time() * 1000 - spread_ms
        messages = sample.generate(count, seed=None if seed is None else seed + round_, error_ratio=error_ratio,
                                   latency_sigma=latency_sigma, start_ms=start, spread_ms=spread_ms, kind=kind)
        with click.progressbar(length=0, label="sending", show_pos=True) as bar:
            sent = sample.send(settings, messages, rate=rate, progress=bar.update)
        click.echo(f"sent {sent} messages ({count} traces) to {settings.kafka_apm_span_topic} / "
                   f"{settings.kafka_apm_log_topic}")
        round_ += 1
        if not forever:
            return


@click.command("send-otlp-sample")
@click.option("--count", default=100, show_default=True, help="Requests the sample service handles per round.")
@click.option("--rate", default=20.0, show_default=True, help="Requests per second; 0 handles them at once.")
@click.option("--seed", default=None, type=int, help="Random seed, for traffic that can be reproduced.")
@click.option("--error-ratio", default=0.05, show_default=True, help="Share of requests that fail with an exception.")
@click.option("--forever", is_flag=True, help="Keep handling rounds of --count until stopped (make run).")
def send_otlp_sample(count: int, rate: float, seed: int | None, error_ratio: float, forever: bool) -> None:
    """Run a small service instrumented with the OpenTelemetry SDK, exporting OTLP/HTTP to the `otlp` process."""
    try:
        from panopticon import otel_sample as sample
    except ImportError as exc:
        raise click.ClickException(f"the OpenTelemetry SDK is missing ({exc}): pip install -e '.[dev]'") from None

    settings = _settings()
    if not sample.wait_for_receiver(settings):
        raise click.ClickException(f"the otlp receiver does not answer at {sample.endpoint(settings)}/healthz "
                                   f"(is the `otlp` process running? OTLP_HTTP_PORT={settings.otlp_http_port})")
    sample.run(settings, count=count, rate=rate, error_ratio=error_ratio, seed=seed, forever=forever,
               report=click.echo)


def _moment_ms(text: str, now_ms: int) -> int:
    """An ISO 8601 time, epoch milliseconds, `now`, or a duration meaning that long ago (6h, 7d)."""
    from panopticon.model.times import parse_time

    if text.strip().lower() == "now":
        return now_ms
    at = parse_time(text)
    if at is not None:
        return int(at)
    try:
        return now_ms - int(_duration_ms(text.strip()))
    except click.BadParameter:
        raise click.BadParameter(f"expected an ISO 8601 time, epoch milliseconds, 'now' or a duration ago "
                                 f"such as 6h or 7d, got {text!r}") from None


# An AppGroup runs its commands inside the app context, where the settings are.
rollup = AppGroup("rollup", help="Rollups of traces-apm into metrics-apm.")


@rollup.command("backfill")
@click.option("--from", "start", required=True, help="Start: ISO 8601, epoch ms, or a duration ago (e.g. 24h).")
@click.option("--to", "end", default="now", show_default=True, help="End, in the same forms as --from.")
def rollup_backfill(start: str, end: str) -> None:
    """Re-roll every closed window in [--from, --to) and the hours they close. Safe to repeat."""
    from panopticon.model.times import now_ms
    from panopticon.rollup import job
    from panopticon.storage import open_store

    now = now_ms()
    start_ms, end_ms = _moment_ms(start, now), _moment_ms(end, now)
    if end_ms <= start_ms:
        raise click.BadParameter(f"--to ({end}) must be after --from ({start})", param_hint="--to")
    store = open_store(_settings(), setup=True)
    try:
        result = job.backfill(store, start_ms, end_ms, now)
    finally:
        store.close()
    summary = result.as_dict()
    click.echo(f"rolled {summary['windows']} windows and {summary['hours']} hours "
               f"({summary['first_window']} .. {summary['last_window']}): {summary['documents']} documents written")


def register_commands(app: Flask) -> None:
    app.cli.add_command(send_sample)
    app.cli.add_command(send_otlp_sample)
    app.cli.add_command(rollup)
