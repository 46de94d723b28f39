"""Commands for developers and operators, run through Flask's CLI (`flask send-sample`, ...)."""

from __future__ import annotations

import click
from flask import Flask, current_app

from panopticon.settings import Settings


def _settings() -> Settings:
    return current_app.config["PANOPTICON_SETTINGS"]


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
def send_sample(count, rate, seed, kind, error_ratio, latency_sigma, spread, forever) -> None:
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


def register_commands(app: Flask) -> None:
    app.cli.add_command(send_sample)
