"""Beat's schedule and the rollup settings it depends on."""

from __future__ import annotations

from pathlib import Path

import pytest

from panopticon.exceptions import ConfigError
from panopticon.settings import load_settings
from panopticon.worker import beat_schedule

HERE = Path(__file__).parent  # no .env files here


def test_beat_sends_rollup_due_every_interval_when_enabled() -> None:
    schedule = beat_schedule(load_settings({"ROLLUP_INTERVAL_SECONDS": "60"}, root=HERE))
    assert schedule["rollup-due"]["task"] == "rollup_due"
    assert schedule["rollup-due"]["schedule"] == 60.0
    assert schedule["rollup-due"]["options"]["expires"] < 60
    assert schedule["rollup-retention"]["task"] == "rollup_retention"


def test_beat_sends_nothing_when_rollups_are_disabled() -> None:
    assert beat_schedule(load_settings({"ROLLUP_ENABLED": "false"}, root=HERE)) == {}


@pytest.mark.parametrize("minutes", ["7", "0", "90", "x"])
def test_window_width_must_divide_an_hour(minutes: str) -> None:
    with pytest.raises(ConfigError, match="ROLLUP_BUCKET_MINUTES"):
        load_settings({"ROLLUP_BUCKET_MINUTES": minutes}, root=HERE)


def test_window_widths_that_divide_an_hour_are_accepted() -> None:
    assert load_settings({"ROLLUP_BUCKET_MINUTES": "15"}, root=HERE).rollup_bucket_minutes == 15


def test_the_settle_time_follows_the_worker_limits_unless_set() -> None:
    automatic = load_settings({}, root=HERE)
    assert automatic.rollup_settle_seconds is None and automatic.settle_seconds == 152  # 90 + 30 + 2 + 30
    longer = load_settings({"BULK_TASK_TIMEOUT_SECONDS": "300"}, root=HERE)
    assert longer.settle_seconds == 287
    assert load_settings({"ROLLUP_SETTLE_SECONDS": "400"}, root=HERE).settle_seconds == 400


def test_a_settle_time_shorter_than_a_batch_may_write_is_refused() -> None:
    with pytest.raises(ConfigError, match="ROLLUP_SETTLE_SECONDS: must be at least 122"):
        load_settings({"ROLLUP_SETTLE_SECONDS": "60"}, root=HERE)
