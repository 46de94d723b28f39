"""The compiled loader's own shortcuts (`_loader.pyx`): they may only answer what the Python check answers.

The loader as a whole is held equal to marshmallow by test_fast_path.py. Here, each C shortcut alone:
the time of our own format against `parse_time` (read) and `iso_ms` (written), and the id table against `ID_RE`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from panopticon.model import ID_MAX_CHARS, ID_RE
from panopticon.model.times import iso_ms, parse_time
from panopticon.processing import _loader, schemas

SETTINGS = settings(max_examples=1000, deadline=None)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@SETTINGS
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999000)))
@example(datetime(2024, 2, 29, 23, 59, 59, 999000))
@example(datetime(1970, 1, 1))
@example(datetime(1969, 12, 31, 23, 59, 59, 1000))
def test_own_format_reads_as_parse_time_does(moment: datetime) -> None:
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")
    expected = (moment.replace(tzinfo=UTC, microsecond=moment.microsecond // 1000 * 1000) - EPOCH) / timedelta(
        milliseconds=1)
    assert _loader.own_time(text) == parse_time(text) == expected
    assert type(_loader.own_time(text)) is float


OWN_FORMAT = "2024-02-29T23:59:59.999Z"
# Our own format with up to three characters changed, to digits, separators, or near misses of them.
NEAR_OWN_FORMAT = st.dictionaries(st.integers(0, len(OWN_FORMAT) - 1), st.sampled_from("0123456789-:.TZtz +\u0663"),
                                  max_size=3).map(lambda changes: "".join(changes.get(i, c)
                                                                          for i, c in enumerate(OWN_FORMAT)))


@SETTINGS
@given(st.one_of(NEAR_OWN_FORMAT, st.text(min_size=24, max_size=24), st.integers(), st.floats(), st.none()))
@example("2023-02-29T00:00:00.000Z")  # no such day
@example("2024-13-01T00:00:00.000Z")
@example("2024-01-01T24:00:00.000Z")
@example("2024-01-01T00:60:00.000Z")
@example("2024-01-01T00:00:60.000Z")
@example("0000-01-01T00:00:00.000Z")
@example("2024-01-01 00:00:00.000Z")
@example("2024-01-01T00:00:00.000z")
@example("2024-01-01T00:00:00,000Z")
@example("2024-0१-01T00:00:00.000Z")  # a digit, but not an ASCII one
def test_own_format_answers_only_what_parse_time_answers(value: object) -> None:
    own = _loader.own_time(value)
    if own is not None:
        assert own == parse_time(value)


def _id_rule(check: object) -> _loader.Rule:
    return _loader.Rule("id", None, "id", True, None, False, _loader.ID, check=check, max_chars=ID_MAX_CHARS,
                        allowed=schemas._ID_CHARACTERS)


# Only the table and the length decide when the Python check refuses everything.
SHORTCUT_ONLY = _id_rule(lambda value: None)


@SETTINGS
@given(st.one_of(st.text(st.characters(max_codepoint=127), max_size=ID_MAX_CHARS + 2),
                 st.text(max_size=8)))
@example("")
@example("a:b")
@example("a b")
@example("!" * ID_MAX_CHARS)
@example("!" * (ID_MAX_CHARS + 1))
@example("~\x7f")
def test_id_shortcut_accepts_exactly_the_ascii_ids_of_the_pattern(value: str) -> None:
    accepted = _loader.fields((SHORTCUT_ONLY,), None, {"id": value}) is not None
    if value.isascii():
        assert accepted == (ID_RE.match(value) is not None)
    else:
        assert not accepted  # left to the pattern
    with_pattern = _loader.fields((_id_rule(ID_RE.match),), None, {"id": value}) is not None
    assert with_pattern == (ID_RE.match(value) is not None)


@pytest.mark.parametrize(("kind", "options", "problem"), [
    (99, {}, "unknown rule kind"),
    (_loader.ID, {"allowed": bytes(128), "max_chars": 8}, "needs its check"),
    (_loader.ID, {"check": ID_RE.match, "allowed": bytes(10), "max_chars": 8}, "128-entry"),
    (_loader.TIME, {}, "needs its check"),
    (_loader.UPPER_CHOICE, {}, "needs its choices"),
    (_loader.NUMBER, {"low": 0}, "needs its bounds"),
])
def test_a_rule_without_what_its_check_needs_is_refused(kind: int, options: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _loader.Rule("x", None, "x", True, None, False, kind, **options)


def test_the_compiled_module_is_built_from_its_source_as_it_is_now() -> None:
    """`make venv` builds it; a .pyx edited since must be built again (the Makefile's install does)."""
    source = Path(_loader.__file__).with_name("_loader.pyx")
    assert Path(_loader.__file__).suffix == ".so"
    assert Path(_loader.__file__).stat().st_mtime >= source.stat().st_mtime, "stale: run `make venv`"


@SETTINGS
@given(st.one_of(st.integers(-40_000_000_000_000, 260_000_000_000_000),
                 st.floats(-40_000_000_000_000, 260_000_000_000_000, allow_nan=False)))
@example(0)
@example(-1)
@example(-0.5)
@example(-1000.5)
@example(951_782_400_000)  # 2000-02-29
@example(1_709_251_199_999.9)  # 2024-02-29T23:59:59.999Z
@example(-30_610_224_000_000)  # 1000-01-01, the first time written here
@example(-30_610_224_000_001)  # 999-12-31: strftime writes the year unpadded, and answers itself
@example(253_402_300_799_999)  # 9999-12-31T23:59:59.999Z, the last
def test_times_are_written_as_the_python_formatter_writes_them(epoch_ms: float) -> None:
    assert _loader.iso_ms(epoch_ms) == iso_ms(epoch_ms)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 2**64, 253_402_300_800_000])
def test_what_it_cannot_write_is_the_python_formatters_to_answer(value: float) -> None:
    try:
        expected: object = iso_ms(value)
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            _loader.iso_ms(value)
    else:
        assert _loader.iso_ms(value) == expected
