"""Tests for the shared log-scale histogram: bucket math, merging, and the stated error bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panopticon.model.histogram import (
    ALPHA,
    GAMMA,
    MIN_VALUE,
    ZERO_BUCKET,
    Histogram,
    bucket_index,
    bucket_value,
    quantiles,
)

# Representative values sit exactly ALPHA from bucket edges; allow float rounding on top.
BOUND = ALPHA * (1 + 1e-9)
# Percentiles, not quantiles: np.percentile divides by 100 itself, so passing p / 100 to ours
# gives both sides the same float q and hence the same nearest rank (0.999 != 99.9 / 100).
PERCENTILES = [0.0, 1.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0]


def within_bound(estimate: float | None, exact: float) -> bool:
    """The stated bound: ALPHA relative, or MIN_VALUE absolute inside the zero bucket."""
    assert estimate is not None
    if exact <= MIN_VALUE:
        return abs(estimate - exact) <= MIN_VALUE
    return abs(estimate - exact) <= BOUND * exact


def histogram_of(values: np.ndarray | list[float]) -> Histogram:
    h = Histogram()
    for value in values:
        h.add(float(value))
    return h


# --- bucket_index / bucket_value -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-5.0, ZERO_BUCKET),
        (0.0, ZERO_BUCKET),
        (MIN_VALUE / 2, ZERO_BUCKET),
        (MIN_VALUE, ZERO_BUCKET),
        (math.nextafter(MIN_VALUE, math.inf), 1),
        (MIN_VALUE * GAMMA * 0.999999, 1),
        (MIN_VALUE * GAMMA * 1.000001, 2),
        (MIN_VALUE * GAMMA**2 * 1.000001, 3),
        (1.0, math.ceil(math.log(1000) / math.log(GAMMA))),
        (3_600_000.0, math.ceil(math.log(3.6e9) / math.log(GAMMA))),
    ],
)
def test_bucket_index_boundaries(value: float, expected: int) -> None:
    assert bucket_index(value) == expected


def test_bucket_index_pinned_values() -> None:
    """Indexes are stored in documents: these must never change."""
    assert [bucket_index(v) for v in (0.002, 1.0, 1000.0, 3_600_000.0)] == [70, 691, 1382, 2201]


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e307])
def test_bucket_index_rejects_non_finite(value: float) -> None:
    with pytest.raises(ValueError):
        bucket_index(value)


@pytest.mark.parametrize(
    ("low", "high"), [(1e-3 * 1.0000001, 1e-2), (1e-2, 1.0), (1.0, 1e3), (1e3, 3.6e6), (3.6e6, 1e7)]
)
def test_bucket_value_within_alpha(low: float, high: float) -> None:
    for value in np.geomspace(low, high, 5_000):
        assert within_bound(bucket_value(bucket_index(value)), value), value


def test_bucket_value_of_zero_bucket() -> None:
    assert bucket_value(ZERO_BUCKET) == 0.0


@given(st.floats(min_value=1e-3, max_value=1e12, exclude_min=True))
def test_bucket_value_within_alpha_property(value: float) -> None:
    assert bucket_index(value) >= 1
    assert within_bound(bucket_value(bucket_index(value)), value)


@given(st.floats(min_value=-1e3, max_value=1e12), st.floats(min_value=-1e3, max_value=1e12))
def test_bucket_index_is_monotone(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert bucket_index(low) <= bucket_index(high)


# --- Histogram basics -------------------------------------------------------------------------


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.count == 0
    assert h.quantile(0.5) is None
    assert quantiles(h, [0.5, 0.99]) == [None, None]
    assert h.to_arrays() == ([], [])


def test_arrays_round_trip_sorted() -> None:
    h = histogram_of([5.0, 0.0, 5.0, 1e4, 0.2])
    indexes, counts = h.to_arrays()
    assert indexes == sorted(indexes)
    assert sum(counts) == 5
    assert Histogram.from_arrays(indexes, counts) == h


def test_from_arrays_accepts_engine_float_keys_and_sums_repeats() -> None:
    assert Histogram.from_arrays([3.0, 3, np.int64(7)], [1, np.int64(2), 0]) == Histogram({3: 3})


@pytest.mark.parametrize(
    ("indexes", "counts"), [([1, 2], [1]), ([-1], [1]), ([1], [-1]), ([1.5], [1]), ([1], [0.5])]
)
def test_from_arrays_rejects_bad_input(indexes: list[float], counts: list[float]) -> None:
    with pytest.raises(ValueError):
        Histogram.from_arrays(indexes, counts)


def test_add_with_count_equals_repeated_add() -> None:
    h = Histogram()
    h.add(12.5, count=3)
    assert h == histogram_of([12.5, 12.5, 12.5])


def test_zero_counts_do_not_affect_equality() -> None:
    assert Histogram({4: 0, 5: 1}) == Histogram({5: 1})
    assert Histogram({5: 1}) != Histogram({5: 2})


@pytest.mark.parametrize("q", [-0.1, 1.1, math.nan])
def test_quantile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        histogram_of([1.0]).quantile(q)


def test_merge_with_itself_doubles() -> None:
    h = histogram_of([1.0, 2.0])
    h.merge(h)
    assert h == Histogram({bucket_index(1.0): 2, bucket_index(2.0): 2})


# --- Merge ------------------------------------------------------------------------------------


def test_merge_equals_histogram_of_concatenation() -> None:
    rng = np.random.default_rng(7)
    parts = [rng.lognormal(3, 1.5, size) for size in (0, 1, 500, 2_000)]
    merged = Histogram()
    for part in parts:
        merged.merge(histogram_of(part))
    assert merged == histogram_of(np.concatenate(parts))
    assert merged.count == 2_501


durations = st.lists(st.floats(min_value=0, max_value=1e8), max_size=50)


@given(durations, durations, durations)
def test_merge_is_associative_and_commutative(a: list[float], b: list[float], c: list[float]) -> None:
    ha, hb, hc = histogram_of(a), histogram_of(b), histogram_of(c)
    left = Histogram()
    left.merge(ha)
    left.merge(hb)
    left.merge(hc)
    bc = Histogram()
    bc.merge(hc)
    bc.merge(hb)
    right = Histogram()
    right.merge(bc)
    right.merge(ha)
    assert left == right == histogram_of(a + b + c)


# --- Quantiles vs numpy -----------------------------------------------------------------------


def distribution(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    if name == "lognormal":
        return rng.lognormal(mean=3.0, sigma=1.2, size=size)
    if name == "uniform":
        return rng.uniform(0.5, 2_000.0, size=size)
    if name == "bimodal":
        fast = rng.normal(5.0, 0.5, size=size)
        slow = rng.normal(800.0, 50.0, size=size)
        return np.abs(np.where(rng.random(size) < 0.8, fast, slow))
    if name == "constant":
        return np.full(size, 42.0)
    if name == "single":
        return np.array([17.3])
    if name == "two":
        return np.resize([3.0, 9_000.0], size)
    raise AssertionError(name)


@pytest.mark.parametrize("size", [1, 2, 10, 10_000])
@pytest.mark.parametrize("name", ["lognormal", "uniform", "bimodal", "constant", "single", "two"])
def test_quantiles_match_numpy_within_alpha(name: str, size: int) -> None:
    data = distribution(name, size, np.random.default_rng(size))
    h = histogram_of(data)
    qs = [p / 100 for p in PERCENTILES]
    for p, q, estimate in zip(PERCENTILES, qs, quantiles(h, qs), strict=True):
        exact = float(np.percentile(data, p, method="inverted_cdf"))
        assert within_bound(estimate, exact), (p, estimate, exact)
        assert estimate == h.quantile(q)


def test_quantiles_preserve_request_order() -> None:
    h = histogram_of(np.arange(1, 101, dtype=float))
    assert quantiles(h, [0.99, 0.5, 0.99, 0.0]) == [
        h.quantile(0.99),
        h.quantile(0.5),
        h.quantile(0.99),
        h.quantile(0.0),
    ]


def test_zero_durations_report_zero() -> None:
    assert histogram_of([0.0, 0.0, 0.0005]).quantile(0.99) == 0.0


@settings(max_examples=300)
@given(
    st.lists(st.floats(min_value=0, max_value=1e8), min_size=1, max_size=200),
    st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=5),
)
def test_quantile_error_bound_property(values: list[float], qs: list[float]) -> None:
    # np.quantile takes q itself, so the nearest rank is computed from the same float as ours.
    h = histogram_of(values)
    for q, estimate in zip(qs, quantiles(h, qs), strict=True):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert within_bound(estimate, exact), (q, estimate, exact)
